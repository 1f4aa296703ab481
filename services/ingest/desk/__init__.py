"""The newsroom desk at /desk/: web pages for office staff, served by ingest. It writes
through services/ingest/submit.py, the API's own write path (see DESIGN.md, the desk)."""

from __future__ import annotations

from pathlib import Path

import jinja2
from aiohttp import web

from services.ingest.desk import admin, site, views
from services.ingest.desk.web import templates_key

HERE = Path(__file__).parent


def setup(app: web.Application) -> None:
    app[templates_key] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    app[templates_key].globals["static"] = lambda name: str(
        app.router["desk-static"].url_for(filename=name)
    )
    add = app.router
    add.add_get("/desk", _to_desk)
    add.add_get("/desk/", views.home)
    add.add_post("/desk/dang-nhap", views.sign_in)
    add.add_post("/desk/dang-xuat", views.sign_out)
    add.add_get("/desk/bai-viet/", views.article_list)
    add.add_get("/desk/bai-viet/moi", views.new_form)
    add.add_post("/desk/bai-viet/moi", views.create)
    article = r"/desk/bai-viet/{id:\d{1,18}}"
    add.add_get(article, views.article_page)
    add.add_get(article + "/trang-thai", views.status)
    add.add_get(article + r"/anh/{part:[A-Za-z0-9][A-Za-z0-9._-]{0,99}}", views.original)
    add.add_get(article + "/sua", views.edit_form)
    add.add_post(article + "/sua", views.edit)
    add.add_get(article + "/go", views.unpublish_form)
    add.add_post(article + "/go", views.unpublish)
    add.add_post(article + "/duyet", views.approve)
    add.add_post(article + "/tra-lai", views.send_back)
    add.add_get("/desk/tai-khoan/", admin.accounts_page)
    add.add_post("/desk/tai-khoan/", admin.create_account)
    add.add_post("/desk/tai-khoan/khoa", admin.disable_account)
    add.add_post("/desk/tai-khoan/mat-khau", admin.reset_password)
    add.add_get("/desk/trang-web/", site.site_page)
    add.add_post("/desk/trang-web/chuyen-muc", site.create_category)
    add.add_post("/desk/trang-web/chuyen-muc/doi-ten", site.rename_category)
    add.add_post("/desk/trang-web/chuyen-muc/thu-tu", site.move_category)
    add.add_post("/desk/trang-web/chuyen-muc/ngung", site.retire_category)
    add.add_post("/desk/trang-web/chuyen-muc/dung-lai", site.restore_category)
    add.add_post("/desk/trang-web/chuyen-muc/xoa", site.delete_category)
    add.add_post("/desk/trang-web/lien-ket", site.save_links)
    add.add_get("/desk/token/", admin.tokens_page)
    add.add_post("/desk/token/", admin.create_token)
    add.add_post("/desk/token/thu-hoi", admin.revoke_token)
    add.add_static("/desk/static/", HERE / "static", append_version=True, name="desk-static")


async def _to_desk(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("/desk/")
