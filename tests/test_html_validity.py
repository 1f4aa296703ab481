"""Every kind of reader page passes the W3C Nu Html Checker (vnu.jar, from the npm registry's
`vnu-jar` package, run on the machine's Java) with zero errors: home, category, its page 2, an
article with photos, search, 404 and 410; and every page of the desk."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings
from tests.conftest import ROOT, publisher
from tests.test_api import bearer, create_category
from tests.test_site import ARTICLE, local, publish, publish_seed, short

Client = Any
VNU = Path(
    os.environ.get("BANTIN_VNU_JAR", ROOT / ".venv/vnu/node_modules/vnu-jar/build/dist/vnu.jar")
)
INSTALL = (
    "npm install --prefix .venv/vnu vnu-jar@26.9.27"
    " (and a Java runtime: apt-get install default-jre-headless)"
)


def check(pages: dict[str, str], folder: Path) -> list[str]:
    """The checker's errors, as "page: message (line)"; one JVM for every page."""
    for name, html in pages.items():
        (folder / f"{name}.html").write_text(html, encoding="utf-8")
    done = subprocess.run(
        [
            "java",
            "-jar",
            str(VNU),
            "--format",
            "json",
            "--exit-zero-always",
            *map(str, (folder / f"{n}.html" for n in pages)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    messages = json.loads(done.stderr)["messages"]
    return [
        f"{m.get('url', '').rsplit('/', 1)[-1]}: {m['message']} (line {m.get('lastLine')})"
        for m in messages
        if m.get("type") == "error" or m.get("subType") == "fatal"
    ]


@pytest.mark.skipif(
    not VNU.exists() or shutil.which("java") is None, reason=f"needs vnu.jar: {INSTALL}"
)
@pytest.mark.usefixtures("worker")
async def test_every_kind_of_page_has_no_html_error(
    api: Client, aiohttp_client: Any, clean: Settings, admin: str, tmp_path: Path
) -> None:
    site = await publisher(aiohttp_client, clean.with_(page_size=2))
    await create_category(api, admin)
    article = await publish_seed(api, admin)
    others = [await publish(api, admin, short(f"Tin số {n}", f"Nội dung {n}.")) for n in range(2)]
    gone = others[0]
    deleted = await api.delete(f"/api/v1/articles/{gone['id']}", headers=bearer(admin))
    assert deleted.status == 200
    await publish(api, admin, short("Tin số 3", "Nội dung 3."))
    category = f"/{ARTICLE['category']}/"
    paths = {
        "home": ("/", 200),
        "category": (category, 200),
        "category-2": (category + "?page=2", 200),
        "article": (local(article["links"]["page"]), 200),
        "search": ("/search?q=h%E1%BB%99i+ngh%E1%BB%8B", 200),
        "not-found": ("/khong-co-trang-nay/", 404),
        "gone": (local(gone["links"]["page"]), 410),
    }
    pages = {}
    for name, (path, status) in paths.items():
        for _ in range(100):  # the worker's edits reach the page cache within moments
            response = await site.get(path, allow_redirects=False)
            if response.status == status:
                break
            await asyncio.sleep(0.05)
        assert response.status == status, (name, path, response.status)
        pages[name] = await response.text()
    assert "<picture>" in pages["article"]
    assert check(pages, tmp_path) == []


@pytest.mark.skipif(
    not VNU.exists() or shutil.which("java") is None, reason=f"needs vnu.jar: {INSTALL}"
)
async def test_every_desk_page_has_no_html_error(
    aiohttp_client: Any, clean: Settings, admin: str, tmp_path: Path
) -> None:
    """The desk's pages too: sign-in (signed out), then as an admin the list, a new article's
    form, an article's page, its edit and unpublish forms, accounts, the site and the tokens."""
    from services.ingest.app import create_app
    from tests.desk_helpers import make_account, sign_in
    from tests.test_desk import FIELDS, article_id, submit

    desk = await aiohttp_client(create_app(clean))
    await create_category(desk, admin)
    pages = {"sign-in": await (await desk.get("/desk/")).text()}
    await make_account(clean, "quantri", "admin")
    csrf = await sign_in(desk, "quantri")
    new = article_id(await submit(desk, csrf, FIELDS, rows=[]))
    paths = {
        "home": "/desk/",
        "list": "/desk/bai-viet/",
        "new": "/desk/bai-viet/moi",
        "article": f"/desk/bai-viet/{new}",
        "edit": f"/desk/bai-viet/{new}/sua",
        "unpublish": f"/desk/bai-viet/{new}/go",
        "accounts": "/desk/tai-khoan/",
        "site": "/desk/trang-web/",
        "tokens": "/desk/token/",
    }
    for name, path in paths.items():
        response = await desk.get(path)
        assert response.status == 200, (name, path, response.status)
        pages[name] = await response.text()
    assert check(pages, tmp_path) == []
