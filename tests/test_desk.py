"""The desk without JavaScript: plain form posts against the real ingest app, PostgreSQL and
Redis. Sign-in, sessions, CSRF, the sign-in throttle, writing with photos, errors that keep what
was typed, edit collisions, unpublishing, roles, review, accounts and tokens."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest

from bantin.bootstrap import demo_seed
from shared import keys
from shared.settings import Settings
from tests.conftest import ROOT
from tests.desk_helpers import (
    PASSWORD,
    article_form,
    csrf_of,
    hidden_fields,
    make_account,
    sign_in,
)
from tests.fixtures.images import heic
from tests.photos import jpeg
from tests.test_api import bearer, create_category

SEED = demo_seed()
CATEGORY = SEED["category"]["slug"]
FIELDS = {
    "title": "Hội nghị triển khai công tác năm 2026",
    "category": CATEGORY,
    "summary": "Sáng nay, Văn phòng tổ chức hội nghị.",
    "body": '<p>Đoạn một.</p><p><img src="cid:anh-1"></p><p>Đoạn <b>hai</b>.</p>',
    "author": "Tố Uyên",
    "unit": "Văn phòng",
    "published_at": "",
}


@pytest.fixture
async def desk(aiohttp_client: Any, clean: Settings) -> Any:
    from services.ingest.app import create_app

    return await aiohttp_client(create_app(clean))


async def article_of(desk: Any, admin: str, article_id: int) -> dict[str, Any]:
    response = await desk.get(f"/api/v1/articles/{article_id}", headers=bearer(admin))
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def submit(desk: Any, csrf: str, fields: dict[str, str] = FIELDS, rows: Any = None) -> Any:
    rows = rows if rows is not None else [(jpeg(), "Quang cảnh hội nghị", "inline")]
    if not rows:
        fields = {**fields, "body": "<p>Đoạn một, không ảnh.</p>"}
    return await desk.post(
        "/desk/bai-viet/moi", data=article_form(csrf, fields, rows), allow_redirects=False
    )


def article_id(response: Any) -> int:
    assert response.status == 303, response.status
    match = re.fullmatch(r"/desk/bai-viet/(\d+)", response.headers["Location"])
    assert match, response.headers["Location"]
    return int(match.group(1))


# --- signing in ----------------------------------------------------------------------------------


async def test_sign_in_page_is_vietnamese_and_strict(desk: Any, clean: Settings) -> None:
    response = await desk.get("/desk/")
    assert response.status == 200
    html = await response.text()
    assert '<html lang="vi">' in html and "Đăng nhập" in html
    assert 'name="username"' in html and 'name="password"' in html
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    # Signed-out pages send you to sign in.
    response = await desk.get("/desk/bai-viet/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/desk/"


async def test_sign_in_rotates_and_sign_out_ends(desk: Any, clean: Settings) -> None:
    await make_account(clean, "vanphong", "submitter")
    response = await desk.post(
        "/desk/dang-nhap",
        data={"csrf": await csrf_of(desk, "/desk/"), "username": "vanphong", "password": "sai"},
    )
    assert response.status == 401
    assert "Tên đăng nhập hoặc mật khẩu chưa đúng" in await response.text()
    response = await desk.post(
        "/desk/dang-nhap",
        data={"csrf": await csrf_of(desk, "/desk/"), "username": "vanphong", "password": PASSWORD},
        allow_redirects=False,
    )
    assert response.status == 303
    cookie = response.cookies["bantin_desk"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/desk/"
    assert not cookie["secure"]  # BANTIN_PUBLIC_URL is http here
    csrf = await csrf_of(desk, "/desk/bai-viet/")
    response = await desk.post("/desk/dang-xuat", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303
    response = await desk.get("/desk/bai-viet/", allow_redirects=False)
    assert response.status == 303
    await sign_in(desk, "vanphong")  # a new session, with a new id
    again = desk.session.cookie_jar.filter_cookies(desk.make_url("/desk/"))["bantin_desk"]
    assert again.value not in ("", cookie.value)
    # The ended session's id opens nothing.
    desk.session.cookie_jar.update_cookies({"bantin_desk": cookie.value}, desk.make_url("/desk/"))
    response = await desk.get("/desk/bai-viet/", allow_redirects=False)
    assert response.status == 303


async def test_sign_in_without_csrf_is_refused(desk: Any, clean: Settings) -> None:
    await make_account(clean, "vanphong", "submitter")
    response = await desk.post(
        "/desk/dang-nhap", data={"username": "vanphong", "password": PASSWORD}
    )
    assert response.status == 403
    assert "bantin_desk" not in {c.key for c in desk.session.cookie_jar}


async def test_throttled_sign_in(desk: Any, clean: Settings) -> None:
    import redis.asyncio as aioredis

    await make_account(clean, "vanphong", "submitter")
    statuses = []
    for _ in range(11):
        response = await desk.post(
            "/desk/dang-nhap",
            data={
                "csrf": await csrf_of(desk, "/desk/"),
                "username": "vanphong",
                "password": "sai-mat-khau",
            },
        )
        statuses.append(response.status)
    assert statuses == [401] * 10 + [429]
    assert 0 < int(response.headers["Retry-After"]) <= 600
    # The right password does not help while the window lasts...
    response = await desk.post(
        "/desk/dang-nhap",
        data={"csrf": await csrf_of(desk, "/desk/"), "username": "vanphong", "password": PASSWORD},
    )
    assert response.status == 429
    assert "thử lại sau" in await response.text()
    # ...and works once it has passed (the window's keys expire on their own).
    redis = aioredis.Redis.from_url(clean.redis_url or "")
    await redis.delete(
        keys.sign_in_failures("user", "vanphong"), keys.sign_in_failures("addr", "127.0.0.1")
    )
    await redis.aclose()
    await sign_in(desk, "vanphong")


# --- writing -------------------------------------------------------------------------------------


async def test_new_article_without_javascript(
    quiet_ingest: Any, clean: Settings, admin: str
) -> None:
    desk = quiet_ingest  # what ingest wrote, before any worker: status `processing`
    await create_category(desk, admin)
    await make_account(clean, "vanphong", "submitter")
    csrf = await sign_in(desk, "vanphong")
    form = await desk.get("/desk/bai-viet/moi")
    html = await form.text()
    assert html.count('type="file" name="photo"') >= 3
    for name in ("title", "category", "summary", "author", "unit", "published_at"):
        assert f'name="{name}"' in html
    assert '<textarea id="body" name="body"' in html
    rows = [
        (jpeg(), "Quang cảnh hội nghị", "inline"),
        (None, "", "inline"),  # an unused row
        (jpeg(colour=(10, 90, 200)), "Đại biểu dự hội nghị", "gallery"),
    ]
    response = await submit(desk, csrf, rows=rows)
    new = article_id(response)
    article = await article_of(desk, admin, new)
    assert article["title"] == FIELDS["title"] and article["status"] == "processing"
    assert [(i["part"], i["caption"], i["role"]) for i in article["images"]] == [
        ("anh-1", "Quang cảnh hội nghị", "inline"),
        ("anh-3", "Đại biểu dự hội nghị", "gallery"),
    ]
    assert 'src="cid:anh-1"' in article["body"]
    assert list((clean.media_dir / "tmp").iterdir()) == []  # nothing left behind
    photo = await desk.get(f"/desk/bai-viet/{new}/anh/anh-1")  # before any rendition exists
    assert photo.status == 200 and photo.content_type == "image/jpeg"
    assert (await photo.read())[:2] == b"\xff\xd8"
    assert (await desk.get(f"/desk/bai-viet/{new}/anh/anh-2")).status == 404
    page = await desk.get(f"/desk/bai-viet/{new}")
    text = await page.text()
    assert "Đang xử lý" in text and "Gửi bài" in text  # status, and the history
    status = await (await desk.get(f"/desk/bai-viet/{new}/trang-thai")).json()
    assert status["status"] == "processing" and status["settled"] is False
    listing = await (await desk.get("/desk/bai-viet/?q=trien+khai")).text()
    assert FIELDS["title"] in listing
    listing = await (await desk.get("/desk/bai-viet/?status=published")).text()
    assert FIELDS["title"] not in listing


async def test_form_errors_keep_what_was_typed(desk: Any, clean: Settings, admin: str) -> None:
    await create_category(desk, admin)
    await make_account(clean, "vanphong", "submitter")
    csrf = await sign_in(desk, "vanphong")
    response = await submit(desk, csrf, {**FIELDS, "title": " "})
    assert response.status == 422
    html = await response.text()
    assert 'id="title-error">Cần điền mục này.' in html
    assert "Sáng nay, Văn phòng tổ chức hội nghị." in html  # the summary comes back
    assert "Quang cảnh hội nghị" in html  # and the caption
    assert 'value="Tố Uyên"' in html


async def test_refused_photo_says_why(desk: Any, clean: Settings, admin: str) -> None:
    await create_category(desk, admin)
    await make_account(clean, "vanphong", "submitter")
    csrf = await sign_in(desk, "vanphong")
    rows = [(b"Day la mot tep van ban, khong phai anh. " * 10, "Ảnh lạ", "inline")]
    response = await submit(desk, csrf, rows=rows)
    assert response.status == 422
    html = await response.text()
    assert "không phải ảnh JPEG, PNG hay WebP" in html
    assert FIELDS["title"] in html
    listing = await (await desk.get("/desk/bai-viet/")).text()
    assert "Chưa có bài viết nào" in listing
    # An iPhone's HEIC: the message says what to do.
    response = await submit(desk, csrf, rows=[(heic(), "Ảnh iPhone", "inline")])
    assert response.status == 422
    html = await response.text()
    assert "xuất ảnh sang JPEG" in html
    assert "Ảnh iPhone" in html and FIELDS["title"] in html  # what was typed is kept


async def test_forms_without_csrf_change_nothing(desk: Any, clean: Settings, admin: str) -> None:
    await create_category(desk, admin)
    await make_account(clean, "vanphong", "submitter")
    csrf = await sign_in(desk, "vanphong")
    for token in (None, "sai" + csrf):
        response = await submit(desk, token)  # type: ignore[arg-type]
        assert response.status == 403
        assert "chưa được thực hiện" in await response.text()
    assert list((clean.media_dir / "tmp").iterdir()) == []
    new = article_id(await submit(desk, csrf))
    response = await desk.post(f"/desk/bai-viet/{new}/go", data={"csrf": "x"})
    assert response.status == 403
    # Not unpublished (a running worker may have published it meanwhile).
    assert (await article_of(desk, admin, new))["status"] in ("processing", "published")
    response = await desk.post("/desk/dang-xuat", data={})
    assert response.status == 403


async def test_edit_collision_shows_both(desk: Any, clean: Settings, admin: str) -> None:
    await create_category(desk, admin)
    await make_account(clean, "vanphong", "submitter")
    csrf = await sign_in(desk, "vanphong")
    new = article_id(await submit(desk, csrf, rows=[]))
    form = await (await desk.get(f"/desk/bai-viet/{new}/sua")).text()
    fields = {**FIELDS, "body": "<p>Đoạn một.</p>"}
    edited = {**hidden_fields(form), **fields, "title": "Tiêu đề mới"}
    response = await desk.post(f"/desk/bai-viet/{new}/sua", data=edited, allow_redirects=False)
    assert response.status == 303
    assert (await article_of(desk, admin, new))["title"] == "Tiêu đề mới"
    other = {**edited, "title": "Tiêu đề của người thứ hai"}
    response = await desk.post(f"/desk/bai-viet/{new}/sua", data=other)
    assert response.status == 409
    html = await response.text()
    assert "vừa được người khác lưu" in html
    assert "Tiêu đề của người thứ hai" in html and "Tiêu đề mới" in html  # both versions
    assert (await article_of(desk, admin, new))["title"] == "Tiêu đề mới"  # nothing overwritten


async def test_status_changes_are_no_collision(
    quiet_ingest: Any, clean: Settings, admin: str
) -> None:
    """A worker publishing the article while its writer edits it changes the version, not the
    text: the edit is saved, and the publication time the worker set is kept. The test is the
    worker, between the form's reading and its post (no real one takes this desk's tasks)."""
    import psycopg

    desk = quiet_ingest

    await create_category(desk, admin)
    await make_account(clean, "vanphong", "submitter")
    csrf = await sign_in(desk, "vanphong")
    new = article_id(await submit(desk, csrf, rows=[]))
    form = await (await desk.get(f"/desk/bai-viet/{new}/sua")).text()
    database_url, _ = clean.require_backends()
    with psycopg.connect(database_url, autocommit=True) as conn:  # as the worker does
        conn.execute(
            "UPDATE articles SET status = 'published', published_at = now(),"
            " version = version + 1 WHERE id = %s",
            (new,),
        )
    edited = {**hidden_fields(form), **FIELDS, "body": "<p>Sửa.</p>", "title": "Đã sửa"}
    response = await desk.post(f"/desk/bai-viet/{new}/sua", data=edited, allow_redirects=False)
    assert response.status == 303, await response.text()
    article = await article_of(desk, admin, new)
    assert article["title"] == "Đã sửa" and article["published_at"] is not None
    events = await (await desk.get(f"/desk/bai-viet/{new}")).text()
    assert "Sửa bài" in events


async def test_unpublish_asks_first(desk: Any, clean: Settings, admin: str) -> None:
    await create_category(desk, admin)
    await make_account(clean, "vanphong", "submitter")
    csrf = await sign_in(desk, "vanphong")
    new = article_id(await submit(desk, csrf, rows=[]))
    confirm = await desk.get(f"/desk/bai-viet/{new}/go")
    assert "Gỡ bài khỏi cổng thông tin?" in await confirm.text()
    response = await desk.post(
        f"/desk/bai-viet/{new}/go", data={"csrf": csrf}, allow_redirects=False
    )
    assert response.status == 303
    assert (await article_of(desk, admin, new))["status"] == "unpublished"


# --- roles ---------------------------------------------------------------------------------------


async def test_submitters_see_their_own(
    aiohttp_client: Any, desk: Any, clean: Settings, admin: str
) -> None:
    from services.ingest.app import create_app

    await create_category(desk, admin)
    await make_account(clean, "nguoi-a", "submitter")
    await make_account(clean, "nguoi-b", "submitter")
    await make_account(clean, "bientap", "editor")
    mine = article_id(await submit(desk, await sign_in(desk, "nguoi-a"), rows=[]))
    other = await aiohttp_client(create_app(clean))
    await sign_in(other, "nguoi-b")
    assert (await other.get(f"/desk/bai-viet/{mine}")).status == 404
    assert FIELDS["title"] not in await (await other.get("/desk/bai-viet/")).text()
    assert (await other.get("/desk/tai-khoan/")).status == 403
    editor = await aiohttp_client(create_app(clean))
    await sign_in(editor, "bientap")
    assert (await editor.get(f"/desk/bai-viet/{mine}")).status == 200
    assert FIELDS["title"] in await (await editor.get("/desk/bai-viet/")).text()


async def test_tokens_belong_to_their_account(desk: Any, clean: Settings, admin: str) -> None:
    await create_category(desk, admin)
    await make_account(clean, "vanphong", "submitter")
    csrf = await sign_in(desk, "vanphong")
    new = article_id(await submit(desk, csrf, rows=[]))
    page = await desk.post("/desk/token/", data={"csrf": csrf, "name": "máy văn phòng"})
    secret = re.search(r'<code class="secret">(bt_[^<]+)</code>', await page.text())
    assert secret
    # The script's token sees the desk's article: both belong to the account.
    response = await desk.get(f"/api/v1/articles/{new}", headers=bearer(secret.group(1)))
    assert response.status == 200
    listing = await (await desk.get("/desk/token/")).text()
    assert secret.group(1) not in listing  # shown once
    token_id = re.search(r'name="id" value="(\d+)"', listing)
    assert token_id
    await desk.post("/desk/token/thu-hoi", data={"csrf": csrf, "id": token_id.group(1)})
    response = await desk.get(f"/api/v1/articles/{new}", headers=bearer(secret.group(1)))
    assert response.status == 401


async def test_admin_manages_accounts(
    aiohttp_client: Any, desk: Any, clean: Settings, admin: str
) -> None:
    from services.ingest.app import create_app

    await make_account(clean, "quantri", "admin")
    csrf = await sign_in(desk, "quantri")
    new = {"csrf": csrf, "username": "nguoimoi", "name": "Người Mới", "role": "submitter"}
    response = await desk.post("/desk/tai-khoan/", data={**new, "password": "ngan"})
    assert response.status == 422 and "ít nhất 10 ký tự" in await response.text()
    response = await desk.post("/desk/tai-khoan/", data={**new, "password": PASSWORD})
    assert response.status == 200 and "Đã tạo tài khoản nguoimoi" in await response.text()
    person = await aiohttp_client(create_app(clean))
    await sign_in(person, "nguoimoi")
    await desk.post(
        "/desk/tai-khoan/mat-khau",
        data={"csrf": csrf, "username": "nguoimoi", "password": "mat-khau-moi-2026"},
    )
    await sign_in(await aiohttp_client(create_app(clean)), "nguoimoi", "mat-khau-moi-2026")
    await desk.post("/desk/tai-khoan/khoa", data={"csrf": csrf, "username": "nguoimoi"})
    # A disabled account's session ends at its next request.
    response = await person.get("/desk/bai-viet/", allow_redirects=False)
    assert response.status == 303


async def test_admin_edits_categories_and_links(desk: Any, clean: Settings, admin: str) -> None:
    await create_category(desk, admin)
    await make_account(clean, "quantri", "admin")
    csrf = await sign_in(desk, "quantri")
    response = await desk.post(
        "/desk/trang-web/chuyen-muc", data={"csrf": csrf, "name": "Thông báo", "slug": ""}
    )
    assert response.status == 200 and "Đã tạo chuyên mục" in await response.text()
    response = await desk.post(
        "/desk/trang-web/chuyen-muc", data={"csrf": csrf, "name": "X", "slug": "api"}
    )
    assert response.status == 422
    await desk.post(
        "/desk/trang-web/chuyen-muc/doi-ten",
        data={"csrf": csrf, "slug": "thong-bao", "name": "Thông báo mới"},
    )
    await desk.post(
        "/desk/trang-web/chuyen-muc/thu-tu", data={"csrf": csrf, "slug": "thong-bao", "to": "up"}
    )
    listed = await (await desk.get("/api/v1/categories")).json()
    assert [c["name"] for c in listed] == ["Thông báo mới", SEED["category"]["name"]]

    links = {
        "csrf": csrf,
        "version": "0",
        "block_title": "Liên kết website",
        "block_links": "Cổng Chính phủ | https://chinhphu.vn\nBộ Tư pháp | https://moj.gov.vn",
    }
    bad = {**links, "block_links": "Cổng Chính phủ chinhphu.vn"}
    response = await desk.post("/desk/trang-web/lien-ket", data=bad)
    assert response.status == 422
    assert "Cổng Chính phủ chinhphu.vn" in await response.text()  # kept for fixing
    response = await desk.post("/desk/trang-web/lien-ket", data=links)
    assert response.status == 200, await response.text()
    saved = await (await desk.get("/api/v1/site")).json()
    assert saved["link_blocks"][0]["links"][1] == {
        "title": "Bộ Tư pháp",
        "url": "https://moj.gov.vn",
    }
    # The same form again, from the version read before: refused, not overwritten.
    response = await desk.post("/desk/trang-web/lien-ket", data={**links, "block_title": "Khác"})
    assert response.status == 412
    assert (await (await desk.get("/api/v1/site")).json())["link_blocks"][0]["title"] == (
        "Liên kết website"
    )


# --- review --------------------------------------------------------------------------------------


async def test_review_round_trip(aiohttp_client: Any, clean: Settings, admin: str) -> None:
    from services.ingest.app import create_app

    settings = clean.with_(review=True)
    writer = await aiohttp_client(create_app(settings))
    await create_category(writer, admin)
    await make_account(settings, "vanphong", "submitter")
    await make_account(settings, "bientap", "editor")
    csrf = await sign_in(writer, "vanphong")
    new = article_id(await submit(writer, csrf, rows=[]))
    assert (await article_of(writer, admin, new))["status"] == "pending"

    # The API: a submitter's token may not review; an editor's may.
    page = await writer.post("/desk/token/", data={"csrf": csrf, "name": "script"})
    found = re.search(r'<code class="secret">(bt_[^<]+)</code>', await page.text())
    assert found
    mine = found.group(1)
    response = await writer.post(f"/api/v1/articles/{new}/approve", headers=bearer(mine))
    assert response.status == 403
    response = await writer.post(
        "/api/v1/articles",
        json={**FIELDS, "body": "<p>API.</p>", "published_at": None},
        headers=bearer(mine),
    )
    assert response.status == 202 and (await response.json())["status"] == "pending"

    editor = await aiohttp_client(create_app(settings))
    editor_csrf = await sign_in(editor, "bientap")
    queue = await (await editor.get("/desk/bai-viet/?status=pending")).text()
    assert FIELDS["title"] in queue
    response = await editor.post(
        f"/desk/bai-viet/{new}/tra-lai",
        data={"csrf": editor_csrf, "note": "Bổ sung tên đại biểu."},
        allow_redirects=False,
    )
    assert response.status == 303
    assert (await article_of(writer, admin, new))["status"] == "returned"
    page_text = await (await writer.get(f"/desk/bai-viet/{new}")).text()
    assert "Bổ sung tên đại biểu." in page_text

    form = await (await writer.get(f"/desk/bai-viet/{new}/sua")).text()
    edited = {**hidden_fields(form), **FIELDS, "body": "<p>Có tên đại biểu.</p>"}
    response = await writer.post(f"/desk/bai-viet/{new}/sua", data=edited, allow_redirects=False)
    assert response.status == 303
    assert (await article_of(writer, admin, new))["status"] == "pending"

    response = await editor.post(
        f"/desk/bai-viet/{new}/duyet", data={"csrf": editor_csrf}, allow_redirects=False
    )
    assert response.status == 303
    # Sent to the workers (one may have published it already).
    assert (await article_of(writer, admin, new))["status"] in ("processing", "published")
    history = await (await editor.get(f"/desk/bai-viet/{new}")).text()
    for step in ("Gửi bài", "Trả lại", "Sửa và gửi lại", "Duyệt đăng"):
        assert step in history
    assert "Người bientap" in history and "Người vanphong" in history
    # Approving twice: 409, nothing changes.
    response = await writer.post(f"/api/v1/articles/{new}/approve", headers=bearer(admin))
    assert response.status == 409

    # A batch from the submitter's script waits for review like a single submission.
    response = await writer.post(
        "/api/v1/articles/batch",
        json={"articles": [{**FIELDS, "body": "<p>Lô.</p>", "published_at": None}]},
        headers=bearer(mine),
    )
    assert response.status == 200
    [result] = (await response.json())["results"]
    assert result["status"] == "pending"
    assert (await article_of(writer, admin, result["id"]))["status"] == "pending"

    # The listing: the submitter's script sees its account's articles (the desk's included),
    # an editor's token every article.
    page = await editor.post("/desk/token/", data={"csrf": editor_csrf, "name": "editor"})
    found = re.search(r'<code class="secret">(bt_[^<]+)</code>', await page.text())
    assert found
    listed = await (await writer.get("/api/v1/articles", headers=bearer(mine))).json()
    assert {new, result["id"]} <= {item["id"] for item in listed["items"]}
    response = await writer.get("/api/v1/articles", headers=bearer(found.group(1)))
    assert {new, result["id"]} <= {item["id"] for item in (await response.json())["items"]}


async def test_editors_publish_directly(aiohttp_client: Any, clean: Settings, admin: str) -> None:
    from services.ingest.app import create_app

    settings = clean.with_(review=True)
    client = await aiohttp_client(create_app(settings))
    await create_category(client, admin)
    await make_account(settings, "bientap", "editor")
    new = article_id(await submit(client, await sign_in(client, "bientap"), rows=[]))
    assert (await article_of(client, admin, new))["status"] in ("processing", "published")
    response = await client.post(
        f"/api/v1/articles/{new}/return", json={"note": ""}, headers=bearer(admin)
    )
    assert response.status == 422


# --- the command line ----------------------------------------------------------------------------


def test_user_commands(clean: Settings) -> None:
    env = {**os.environ, **clean.to_env()}

    def bantin(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bantin.cli", "user", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )

    made = bantin(
        "create", "nguyenvana", "--role", "editor", "--name", "Nguyễn Văn A", stdin=PASSWORD + "\n"
    )
    assert made.returncode == 0, made.stderr
    assert bantin("create", "nguyenvana", "--role", "editor", stdin=PASSWORD).returncode == 1
    assert (
        "at least 10"
        in bantin("create", "b", "--role", "editor", stdin="x").stderr
        + bantin("create", "nguyenvanb", "--role", "editor", stdin="ngan").stderr
    )
    listed = bantin("list")
    assert "nguyenvana\teditor\tactive\tNguyễn Văn A" in listed.stdout
    assert bantin("password", "nguyenvana", stdin="mat-khau-moi-2026\n").returncode == 0
    assert bantin("disable", "nguyenvana").returncode == 0
    assert "disabled" in bantin("list").stdout
