"""What the desk's tests share: accounts made directly, signing in as a browser does, and the
article form posted as a browser without JavaScript posts it (multipart/form-data)."""

from __future__ import annotations

import io
import re
from typing import Any

import aiohttp
import psycopg
from psycopg.rows import dict_row

from shared import accounts
from shared.settings import Settings

PASSWORD = "mat-khau-rat-dai-2026"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def make_account(settings: Settings, username: str, role: str) -> accounts.Account:
    database_url, _ = settings.require_backends()
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        return await accounts.create(conn, username, PASSWORD, role, f"Người {username}")


async def csrf_of(client: Any, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    found = CSRF.search(await response.text())
    assert found, f"no CSRF field on {path}"
    return found.group(1)


async def sign_in(client: Any, username: str, password: str = PASSWORD) -> str:
    """Sign in; returns the session's CSRF token (as any signed-in page carries it)."""
    token = await csrf_of(client, "/desk/")
    response = await client.post(
        "/desk/dang-nhap",
        data={"csrf": token, "username": username, "password": password},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    return await csrf_of(client, "/desk/bai-viet/moi")


def article_form(
    csrf: str | None,
    fields: dict[str, str],
    rows: list[tuple[bytes | None, str, str]],
    *,
    filename: str = "anh.jpg",
) -> aiohttp.MultipartWriter:
    """The new-article form: CSRF, the text fields, then rows of photo, caption, role (a row
    without a file is sent as a browser sends an empty file input)."""
    writer = aiohttp.MultipartWriter("form-data")

    def text(name: str, value: str) -> None:
        part = writer.append(value)
        part.set_content_disposition("form-data", name=name)

    if csrf is not None:
        text("csrf", csrf)
    for name, value in fields.items():
        text(name, value)
    for data, caption, role in rows:
        part = writer.append(
            io.BytesIO(data or b""),
            {"Content-Type": "image/jpeg" if data else "application/octet-stream"},
        )
        part.set_content_disposition("form-data", name="photo", filename=filename if data else "")
        text("caption", caption)
        text("role", role)
    return writer


def hidden_fields(html: str) -> dict[str, str]:
    """The edit form's hidden fields (the version it was read at, and what it started from),
    as a browser sends them back."""
    import html as html_lib

    found = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html)
    return {name: html_lib.unescape(value) for name, value in found}
