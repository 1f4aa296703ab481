"""The desk in a real browser: headless Chromium (Debian's package) driven by Playwright
against real ingest and publisher servers, PostgreSQL, Redis and a Celery worker; at an office
screen's size (1366x768) and a phone's (390x844).

Every desk page is checked by axe-core (vendored in tests/vendor/axe-core) for serious and
critical violations, and photographed: the screenshots are kept under the test's tmp dir
(and, for a look by eye, copied to bench-results/screenshots/desk/). Nothing leaves the
machine: requests to any other host are refused by the page's router.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings
from tests.browser import ARGS, CHROMIUM, OFFICE, PHONE, axe_context, check_and_shoot
from tests.conftest import publisher
from tests.desk_helpers import PASSWORD, make_account
from tests.photos import jpeg
from tests.test_api import create_category

WORD = """<html xmlns:o="urn:schemas-microsoft-com:office:office"><head><style>
p.MsoNormal {font-family: Arial}</style></head><body lang=VI>
<!--[if gte mso 9]><xml><o:OfficeDocumentSettings/></xml><![endif]-->
<h1 style="color:#2F5496">Kết quả nổi bật</h1>
<p class=MsoNormal style="margin:0"><b>Toàn ngành</b> đã <i>hoàn thành</i> các chỉ tiêu.<o:p>
</o:p></p>
<p class=MsoNormal><o:p>&nbsp;</o:p></p>
<ul><li class=MsoListParagraph>Thụ lý 120 vụ</li><li>Giải quyết 118 vụ</li></ul>
<table class=MsoTableGrid border=1><tr><td><p>Chỉ tiêu</p></td><td><p>Kết quả</p></td></tr></table>
<p><span style="font-family:Wingdings;color:red">Chữ màu đỏ</span>
<a href="https://vksnd.thaibinh.gov.vn">Cổng thông tin</a> <a href="javascript:alert(1)">xấu</a></p>
<script>alert("no")</script><img src="file:///C:/Users/a/anh.png"></body></html>"""
DOCS = (
    '<meta charset="utf-8"><b style="font-weight:normal;" id="docs-internal-guid-1">'
    '<p dir="ltr"><span style="font-weight:700;">Google Docs đậm</span>'
    '<span style="font-style:italic;"> và nghiêng</span></p></b>'
)

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="needs Chromium: apt-get install chromium (Debian's package)"
    ),
    pytest.mark.usefixtures("worker"),
]


@pytest.fixture
async def servers(aiohttp_server: Any, clean: Settings) -> Any:
    """The publisher, then ingest with BANTIN_PUBLIC_URL set to it (so that the desk's links
    and photos point at a server the browser can reach)."""
    from services.ingest.app import create_app

    site = await publisher(aiohttp_server, clean)
    origin = str(site.make_url("")).rstrip("/")

    async def start(**changes: Any) -> tuple[str, str]:
        ingest = await aiohttp_server(create_app(clean.with_(public_url=origin, **changes)))
        return str(ingest.make_url("")).rstrip("/"), origin

    return start


class Browser:
    """One browsing context: local requests only, console errors kept, axe and screenshots."""

    def __init__(
        self, browser: Any, viewport: dict[str, int], origins: tuple[str, ...], shots: Path
    ):
        self.browser, self.viewport, self.origins, self.shots = browser, viewport, origins, shots
        self.errors: list[str] = []
        self.refused: list[str] = []
        self.expected_errors = 0

    async def open(self) -> Any:
        self.context = await axe_context(self.browser, self.viewport)
        self.page = await self.context.new_page()

        async def local_only(route: Any) -> None:
            if route.request.url.startswith(self.origins) or route.request.url.startswith(
                ("blob:", "data:")
            ):
                await route.continue_()
            else:
                self.refused.append(route.request.url)
                await route.abort()

        await self.page.route("**/*", local_only)
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.on(
            "console",
            lambda msg: (
                self.errors.append(f"{msg.text} at {msg.location}") if msg.type == "error" else None
            ),
        )
        return self.page

    async def check(self, name: str) -> None:
        """axe-core on the page as it is now, then a full-page screenshot."""
        await check_and_shoot(self.page, name, self.shots, "desk")

    async def sign_in(self, desk: str, username: str, password: str = PASSWORD) -> None:
        await self.page.goto(desk + "/desk/")
        await self.page.get_by_label("Tên đăng nhập").fill(username)
        await self.page.get_by_label("Mật khẩu").fill(password)
        await self.page.get_by_role("button", name="Đăng nhập").click()
        await self.page.wait_for_url("**/desk/bai-viet/")

    def assert_clean(self) -> None:
        unexpected = [e for e in self.errors if "Failed to load resource" not in e]
        assert unexpected == [], "\n".join(unexpected)
        assert len(self.errors) - len(unexpected) <= self.expected_errors, self.errors
        assert self.refused == [], f"requests to other hosts: {self.refused}"


async def paste(page: Any, html: str) -> None:
    await page.locator("#body-editor").click()
    await page.evaluate(
        """html => {
            const data = new DataTransfer();
            data.setData('text/html', html);
            data.setData('text/plain', 'x');
            document.getElementById('body-editor').dispatchEvent(new ClipboardEvent('paste',
                {clipboardData: data, bubbles: true, cancelable: true}));
        }""",
        html,
    )


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    paths = []
    for n, colour in enumerate([(200, 30, 30), (30, 140, 60), (20, 60, 200)], 1):
        path = tmp_path / f"hoi-nghi-{n}.jpg"
        path.write_bytes(jpeg(1600, 1067, colour))
        paths.append(path)
    return paths


async def test_write_publish_edit_unpublish(
    servers: Any, clean: Settings, admin: str, api: Any, photos: list[Path], tmp_path: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    desk, site = await servers()
    await create_category(api, admin)
    await make_account(clean, "vanphong", "submitter")
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for viewport in (OFFICE, PHONE):
                user = Browser(chromium, viewport, (desk, site), tmp_path)
                page = await user.open()
                await page.goto(desk + "/desk/")
                await user.check("dang-nhap")
                await user.sign_in(desk, "vanphong")
                await user.check("bai-viet")
                await page.get_by_role("link", name="Viết bài mới").first.click()
                await write_article(page, photos)
                await user.check("viet-bai")
                await page.get_by_role("button", name="Đăng bài").click()
                await page.wait_for_url(re.compile(r".*/desk/bai-viet/\d+$"))
                await page.evaluate("window.stillHere = true")
                label = page.locator("#status-label")
                await label.filter(has_text="Đã đăng").wait_for(timeout=90_000)
                assert await page.evaluate("window.stillHere") is True  # no reload
                public = page.get_by_role("link", name="Xem trên cổng thông tin")
                assert (await public.get_attribute("href") or "").startswith(site)
                await user.check("bai-da-dang")
                article_url = page.url
                await check_published(api, admin, article_url)

                # Edit, and a collision: a second tab saves first.
                await page.get_by_role("link", name="Sửa bài").click()
                other = await user.context.new_page()
                await other.goto(page.url)
                await other.get_by_label("Tiêu đề", exact=False).first.fill(
                    "Tiêu đề sửa ở thẻ khác"
                )
                await other.get_by_role("button", name="Lưu").click()
                await other.wait_for_url(article_url)
                await page.locator("#title").fill("Tiêu đề của tôi")
                await page.get_by_role("button", name="Lưu").click()
                await page.get_by_text("vừa được người khác lưu").wait_for()
                assert await page.locator("#saved-h").is_visible()
                assert "Tiêu đề sửa ở thẻ khác" in await page.locator(".compare").inner_text()
                assert await page.locator("#title").input_value() == "Tiêu đề của tôi"
                await user.check("sua-bai-trung")
                user.expected_errors += 1  # the 409 answer is logged by Chromium
                await page.get_by_role("button", name="Lưu").click()  # keep mine, knowingly
                await page.wait_for_url(article_url)
                assert await page.locator("h1").inner_text() == "Tiêu đề của tôi"
                assert "Sửa bài" in await page.locator(".history").inner_text()

                # Unpublish, after saying yes.
                await page.get_by_role("link", name="Gỡ bài").click()
                await user.check("go-bai")
                await page.get_by_role("button", name="Gỡ bài").click()
                await page.wait_for_url(article_url)
                assert await page.locator("#status-label").inner_text() == "Đã gỡ"
                await user.context.close()
                user.assert_clean()
        finally:
            await chromium.close()


async def write_article(page: Any, photos: list[Path]) -> None:
    await page.locator("#title").fill("Hội nghị tổng kết công tác năm 2026")
    await page.locator("#category").select_option(label="Tin hoạt động")
    await page.locator("#summary").fill("Sáng ngày 12/01, Viện kiểm sát tổ chức hội nghị.")
    await paste(page, WORD)
    await paste(page, DOCS)
    body = await page.locator("#body").input_value()
    for kept in ("<h2>Kết quả nổi bật</h2>", "<strong>Toàn ngành</strong>", "<em>hoàn thành</em>"):
        assert kept in body, body
    for kept in ("<li>Thụ lý 120 vụ</li>", "<table>", '<a href="https://vksnd.thaibinh.gov.vn">'):
        assert kept in body, body
    assert "<strong>Google Docs đậm</strong>" in body and "<em> và nghiêng</em>" in body
    for dropped in ("style=", "class=", "o:p", "script", "javascript:", "file:", "Wingdings"):
        assert dropped not in body, body
    await page.locator("#picker").set_input_files([str(p) for p in photos])
    rows = page.locator("#rows .row")
    assert await rows.count() == 3
    await page.wait_for_function(
        "Array.from(document.querySelectorAll('#rows img')).every(i => i.naturalWidth > 0)"
    )
    for n, caption in enumerate(["Quang cảnh hội nghị", "Đại biểu phát biểu", "Trao khen thưởng"]):
        await page.locator(f"#caption-{n + 1}").fill(caption)
    # Reorder: the second photo first.
    await rows.nth(1).locator("[data-action=up]").click()
    assert await page.locator("#caption-1").input_value() == "Đại biểu phát biểu"
    await rows.nth(0).locator("[data-action=place]").click()
    assert '<img src="cid:anh-2">' in await page.locator("#body").input_value()
    # A file that is not a photo is refused at once, and nothing typed is lost.
    await page.locator("#picker").set_input_files(
        [{"name": "bao-cao.docx", "mimeType": "application/msword", "buffer": b"PK\x03\x04"}]
    )
    assert "không phải ảnh" in await page.locator("#photos-status").inner_text()
    assert await rows.count() == 3
    assert await page.locator("#title").input_value() == "Hội nghị tổng kết công tác năm 2026"


async def check_published(api: Any, admin: str, article_url: str) -> None:
    from tests.test_api import bearer

    article_id = article_url.rstrip("/").rsplit("/", 1)[1]
    response = await api.get(f"/api/v1/articles/{article_id}", headers=bearer(admin))
    article = await response.json()
    assert [(i["part"], i["caption"]) for i in article["images"]] == [
        ("anh-2", "Đại biểu phát biểu"),
        ("anh-1", "Quang cảnh hội nghị"),
        ("anh-3", "Trao khen thưởng"),
    ]
    assert 'src="cid:anh-2"' in article["body"] or "anh-2" in json.dumps(article["images"])


@pytest.mark.parametrize(
    ("mine", "theirs"), [(PHONE, OFFICE), (OFFICE, PHONE)], ids=["writer-phone", "writer-office"]
)
async def test_review_csrf_and_throttle(
    servers: Any,
    clean: Settings,
    admin: str,
    api: Any,
    photos: list[Path],
    tmp_path: Path,
    mine: dict[str, int],
    theirs: dict[str, int],
) -> None:
    """Review on: a submitter (on a phone, then at an office screen) sends, an editor (at the
    other width) returns it with a note, the submitter edits and resends, the editor approves
    and it publishes. Then a forged form is refused (the submitter's width), the admin's pages
    are checked (the editor's) and a guessed password is throttled (the submitter's): each
    step at both widths over the two runs."""
    playwright_api = pytest.importorskip("playwright.async_api")
    desk, site = await servers(review=True)
    await create_category(api, admin)
    await make_account(clean, "vanphong", "submitter")
    await make_account(clean, "bientap", "editor")
    await make_account(clean, "quantri", "admin")
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            writer = Browser(chromium, mine, (desk, site), tmp_path)
            wpage = await writer.open()
            await writer.sign_in(desk, "vanphong")
            await wpage.get_by_role("link", name="Viết bài mới").first.click()
            await wpage.locator("#title").fill("Tập huấn nghiệp vụ kiểm sát")
            await wpage.locator("#category").select_option(label="Tin hoạt động")
            await paste(wpage, "<p>Sáng nay, <b>Viện kiểm sát</b> tổ chức tập huấn.</p>")
            await wpage.locator("#picker").set_input_files([str(photos[0])])
            await wpage.locator("#caption-1").fill("Toàn cảnh buổi tập huấn")
            await wpage.get_by_role("button", name="Gửi duyệt").click()
            await wpage.wait_for_url(re.compile(r".*/desk/bai-viet/\d+$"))
            article_url = wpage.url
            assert await wpage.locator("#status-label").inner_text() == "Chờ duyệt"
            await writer.check("cho-duyet")

            editor = Browser(chromium, theirs, (desk, site), tmp_path)
            epage = await editor.open()
            await editor.sign_in(desk, "bientap")
            await epage.get_by_role("link", name="Chờ duyệt").click()
            await editor.check("hang-cho-duyet")
            await epage.get_by_role("link", name="Tập huấn nghiệp vụ kiểm sát").click()
            await editor.check("duyet-bai")
            await epage.get_by_label("Trả lại cho người viết").fill(
                "Xin bổ sung thời gian, địa điểm."
            )
            await epage.get_by_role("button", name="Trả lại bài").click()
            await epage.wait_for_url(article_url)
            assert await epage.locator("#status-label").inner_text() == "Bị trả lại"

            await wpage.reload()
            assert "Xin bổ sung thời gian, địa điểm." in await wpage.locator(".note").inner_text()
            await writer.check("bi-tra-lai")
            await wpage.get_by_role("link", name="Sửa bài").click()
            await writer.check("sua-bai")
            await wpage.locator("#summary").fill("Sáng 12/01 tại hội trường Viện kiểm sát tỉnh.")
            await wpage.get_by_role("button", name="Lưu").click()
            await wpage.wait_for_url(article_url)
            assert await wpage.locator("#status-label").inner_text() == "Chờ duyệt"

            await epage.reload()
            await epage.get_by_role("button", name="Duyệt và đăng").click()
            await epage.wait_for_url(article_url)
            await epage.evaluate("window.stillHere = true")
            await epage.locator("#status-label").filter(has_text="Đã đăng").wait_for(timeout=90_000)
            assert await epage.evaluate("window.stillHere") is True
            steps = await epage.locator(".history").inner_text()
            for step in ("Gửi bài", "Trả lại", "Sửa và gửi lại", "Duyệt đăng"):
                assert step in steps, steps
            await wpage.goto(desk + "/desk/bai-viet/")
            await writer.check("bai-viet-co-bai")

            # A forged form (a wrong CSRF token): refused, nothing changes.
            await wpage.goto(article_url + "/go")
            await wpage.evaluate(
                "document.querySelector('form[action$=\"/go\"] input[name=csrf]').value = 'gia-mao'"
            )
            writer.expected_errors += 1
            await wpage.get_by_role("button", name="Gỡ bài").click()
            await wpage.get_by_text("chưa được thực hiện").wait_for()
            await writer.check("csrf-tu-choi")
            await wpage.goto(article_url)
            assert await wpage.locator("#status-label").inner_text() == "Đã đăng"

            admin_user = Browser(chromium, theirs, (desk, site), tmp_path)
            apage = await admin_user.open()
            await admin_user.sign_in(desk, "quantri")
            await apage.get_by_role("link", name="Tài khoản").click()
            await admin_user.check("tai-khoan")
            await apage.get_by_role("link", name="Trang web").click()
            await admin_user.check("trang-web")
            await apage.get_by_role("link", name="Token API").click()
            await apage.get_by_label("Tên gợi nhớ").fill("Máy chủ văn phòng")
            await apage.get_by_role("button", name="Tạo token").click()
            assert (await apage.locator(".secret").inner_text()).startswith("bt_")
            await admin_user.check("token-api")

            # Guessing a password: the 11th wrong try in 10 minutes is refused with 429.
            guesser = Browser(chromium, mine, (desk, site), tmp_path)
            gpage = await guesser.open()
            for _ in range(11):
                await gpage.goto(desk + "/desk/")
                await gpage.get_by_label("Tên đăng nhập").fill("vanphong")
                await gpage.get_by_label("Mật khẩu").fill("doan-mat-khau")
                async with gpage.expect_navigation():
                    await gpage.get_by_role("button", name="Đăng nhập").click()
                guesser.expected_errors += 1
            assert "thử lại sau" in await gpage.locator(".alert").inner_text()
            await guesser.check("dang-nhap-bi-chan")
            for user in (writer, editor, admin_user, guesser):
                await user.context.close()
                user.assert_clean()
        finally:
            await chromium.close()


async def test_admin_manages_categories(
    servers: Any, clean: Settings, admin: str, api: Any, tmp_path: Path
) -> None:
    """An admin creates, renames, moves, retires (sending readers to another category) and
    deletes categories, at an office screen and on a phone; a refusal comes back beside its
    field with what was typed; the retired category's page sends readers on."""
    playwright_api = pytest.importorskip("playwright.async_api")
    desk, site = await servers()
    await create_category(api, admin)  # "Tin hoạt động", with an article below
    posted = await api.post(
        "/api/v1/articles",
        json={
            "title": "Bài trong chuyên mục",
            "category": "tin-hoat-dong",
            "body": "<p>Nội dung.</p>",
        },
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert posted.status == 202
    await make_account(clean, "quantri", "admin")
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for n, viewport in enumerate((OFFICE, PHONE)):
                user = Browser(chromium, viewport, (desk, site), tmp_path)
                page = await user.open()
                await user.sign_in(desk, "quantri")
                await page.get_by_role("link", name="Trang web").click()
                slug = f"thong-bao-{n}"
                await page.get_by_label("Chuyên mục mới").fill("Thông báo")
                await page.get_by_label("Đường dẫn (để trống để tự tạo)").fill(slug)
                await page.get_by_role("button", name="Thêm chuyên mục").click()
                await page.get_by_text("Đã tạo chuyên mục “Thông báo”").wait_for()
                # A reserved address: refused beside the field, the name kept.
                await page.get_by_label("Chuyên mục mới").fill("Trang tìm kiếm")
                await page.get_by_label("Đường dẫn (để trống để tự tạo)").fill("search")
                user.expected_errors += 1  # the browser logs the refusal's status
                await page.get_by_role("button", name="Thêm chuyên mục").click()
                await page.get_by_text("một số tên dành riêng").wait_for()
                assert await page.get_by_label("Chuyên mục mới").input_value() == "Trang tìm kiếm"
                await user.check("chuyen-muc-loi")

                await page.get_by_label("Tên chuyên mục Thông báo").fill("Thông báo mới")
                await page.get_by_role("button", name="Đổi tên (Thông báo)").click()
                await page.get_by_text("Đã đổi tên thành “Thông báo mới”").wait_for()
                await page.get_by_role("button", name="Lên (Thông báo mới)").click()
                await page.wait_for_url("**/desk/trang-web/")
                listed = await (await api.get("/api/v1/categories")).json()
                assert listed[0]["slug"] == slug

                # The category with an article cannot be deleted: no such button; retire it.
                assert (
                    await page.get_by_role("button", name="Xóa chuyên mục Tin hoạt động").count()
                    == 0
                )
                if n == 0:
                    await page.locator("select[name=redirect_to]").last.select_option(slug)
                    await page.get_by_role("button", name="Ngừng chuyên mục Tin hoạt động").click()
                    await page.get_by_text("Đã ngừng chuyên mục “Tin hoạt động”").wait_for()
                    await user.check("chuyen-muc")
                    retired = await api.get("/api/v1/categories")
                    assert "tin-hoat-dong" not in [c["slug"] for c in await retired.json()]
                    reader = await user.context.new_page()
                    await reader.goto(site + "/tin-hoat-dong/")
                    assert reader.url == f"{site}/{slug}/"  # sent on to the chosen category
                    await reader.close()
                    # It now sends its readers to the new one, which cannot be deleted.
                    user.expected_errors += 1
                    await page.get_by_role("button", name="Xóa chuyên mục Thông báo mới").click()
                    await page.get_by_text("đang chuyển người đọc tới chuyên mục này").wait_for()
                    await user.check("chuyen-muc-xoa-loi")
                    await page.get_by_role(
                        "button", name="Dùng lại chuyên mục Tin hoạt động"
                    ).click()
                    await page.get_by_text("Đã dùng lại chuyên mục “Tin hoạt động”").wait_for()
                else:
                    await user.check("chuyen-muc")
                # The new one is empty and nothing points to it: it can be deleted.
                await page.get_by_role("button", name="Xóa chuyên mục Thông báo mới").click()
                await page.get_by_text(f"Đã xóa chuyên mục “{slug}”").wait_for()
                user.assert_clean()
                await user.context.close()
        finally:
            await chromium.close()
