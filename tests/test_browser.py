"""The readers' site in a real browser: headless Chromium (Debian's package) driven by
Playwright, against a real publisher server with the seed article published with its photos;
at an office screen's size (1366x768) and a phone's (390x844). The article, search, home and
category pages are each checked by axe-core (no serious or critical violation, tests/browser.py)
and photographed (copies in bench-results/screenshots/site/).

Needs `apt-get install chromium` (CI installs it); skipped with that advice when it is absent.
Nothing leaves the machine: every request to another host is refused by the page's router.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bantin.bootstrap import demo_seed
from shared.settings import Settings
from tests.browser import ARGS, CHROMIUM, OFFICE, PHONE, axe_context, check_and_shoot
from tests.conftest import publisher
from tests.test_site import LINK_BLOCKS, local, publish, publish_seed, put_links, short

SEED = demo_seed()["article"]

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="needs Chromium: apt-get install chromium (Debian's package)"
    ),
    pytest.mark.usefixtures("worker"),
]


@pytest.fixture
async def server(aiohttp_server: Any, clean: Settings) -> Any:
    """The publisher as a real HTTP server on a free port (the browser needs a socket)."""
    return await publisher(aiohttp_server, clean)


async def test_article_page_in_chromium(api: Any, server: Any, admin: str, tmp_path: Path) -> None:
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="needs Playwright: pip install playwright"
    )
    from tests.test_api import create_category

    await create_category(api, admin)
    assert (await put_links(api, admin)).status == 200
    related = await publish(
        api, admin, short("Viện kiểm sát nhân dân tỉnh Thái Bình tập huấn nghiệp vụ", "Tập huấn.")
    )
    seed = await publish_seed(api, admin)
    origin = str(server.make_url("")).rstrip("/")
    url = origin + local(seed["links"]["page"])

    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for viewport in (OFFICE, PHONE):
                context = await axe_context(browser, viewport)
                page = await context.new_page()
                refused: list[str] = []

                async def local_only(route: Any, refused: list[str] = refused) -> None:
                    if route.request.url.startswith(origin):
                        await route.continue_()
                    else:
                        refused.append(route.request.url)
                        await route.abort()

                await page.route("**/*", local_only)
                errors: list[str] = []
                page.on("pageerror", lambda err, errors=errors: errors.append(str(err)))
                response = await page.goto(url, wait_until="load")
                assert response is not None and response.status == 200
                await check_page(page, related["title"])
                shot = await check_and_shoot(page, "article", tmp_path, "site")
                assert shot.stat().st_size > 10_000
                assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
                # Search without diacritics: the marks land on the accented words.
                await page.goto(origin + "/search?q=uy+vien", wait_until="load")
                marks = await page.locator("main mark").all_text_contents()
                assert "Ủy viên" in marks, marks
                await check_and_shoot(page, "search", tmp_path, "site")
                for name, path in (("home", "/"), ("category", f"/{SEED['category']}/")):
                    response = await page.goto(origin + path, wait_until="load")
                    assert response is not None and response.status == 200, path
                    assert await page.locator("main").get_by_text(SEED["title"]).count() > 0
                    await check_and_shoot(page, name, tmp_path, "site")
                assert refused == [], f"requests to other hosts: {refused}"
                assert errors == []
                await context.close()
        finally:
            await browser.close()


async def check_page(page: Any, related_title: str) -> None:
    title = page.locator("main h1")
    assert await title.is_visible()
    assert await title.inner_text() == SEED["title"]
    assert await page.locator(".article-meta time").inner_text() == "12/01/2022 08:16"

    # Every photo loads: lazy ones once scrolled to, as a reader would.
    images = page.locator("main img")
    assert await images.count() == 7
    for n in range(await images.count()):
        await images.nth(n).scroll_into_view_if_needed()
    await page.wait_for_function(
        "Array.from(document.querySelectorAll('main img'))"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=15_000,
    )
    sizes = await images.evaluate_all(
        "imgs => imgs.map(i => [i.naturalWidth, i.getBoundingClientRect().width])"
    )
    assert all(natural > 0 and shown > 50 for natural, shown in sizes), sizes

    captions = await page.locator(".article-body figcaption").all_inner_texts()
    assert [c.strip() for c in captions] == [
        i["caption"].replace("\xa0", " ") for i in SEED["images"][:3]
    ]
    # (text_content: headings are shown in capitals by the style sheet)
    assert await page.locator(".gallery h2").text_content() == SEED["gallery_title"]
    assert await page.locator(".byline").inner_text() == "Tố Uyên - Văn phòng VKSND tỉnh"

    related = page.locator(".related-list a")
    assert await related.all_inner_texts() == [related_title]
    assert await page.locator(".related h2").text_content() == "Tin liên quan"

    sidebar = page.locator("aside.sidebar")
    assert await sidebar.is_visible()
    titles = await sidebar.locator("h2").all_text_contents()
    assert titles == [b["title"] for b in LINK_BLOCKS] + ["Thống kê"]
    online = await page.locator(".stat-online").inner_text()
    total = await page.locator(".stat-total").inner_text()
    assert re.fullmatch(r"\d+", online) and re.fullmatch(r"\d+", total), (online, total)
