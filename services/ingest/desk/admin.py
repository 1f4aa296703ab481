"""Accounts (admins) and each account's own API tokens, in the desk."""

from __future__ import annotations

from aiohttp import web

from services.ingest.desk import labels
from services.ingest.desk.web import DeskError, page, posted, render, require
from shared import accounts, tokens
from shared.models import ACCOUNT_ROLES
from shared.web import pool_key

ACCOUNT_ERRORS = {
    "username": "Tên đăng nhập gồm 2 đến 40 chữ thường không dấu, số, dấu chấm, gạch dưới"
    " hoặc gạch ngang, ví dụ nguyenvana.",
    "role": "Hãy chọn một vai trò.",
    "password-short": f"Mật khẩu cần ít nhất {accounts.MIN_PASSWORD} ký tự.",
    "exists": "Tên đăng nhập này đã có người dùng.",
}


async def _accounts_page(
    request: web.Request,
    *,
    refused: accounts.AccountError | None = None,
    notice: str = "",
    **kept: str,
) -> web.Response:
    desk = await require(request, roles=("admin",))
    async with request.app[pool_key].connection() as conn:
        people = await accounts.list_all(conn)
    return render(
        request,
        "accounts.html",
        status=422 if refused else 200,
        desk=desk,
        people=people,
        roles=ACCOUNT_ROLES,
        labels=labels,
        error=ACCOUNT_ERRORS.get(refused.code, str(refused)) if refused else "",
        notice=notice,
        kept=kept,
    )


@page
async def accounts_page(request: web.Request) -> web.StreamResponse:
    return await _accounts_page(request)


@page
async def create_account(request: web.Request) -> web.StreamResponse:
    _, data = await posted(request, roles=("admin",))
    username = data.get("username", "").strip().lower()
    try:
        async with request.app[pool_key].connection() as conn:
            await accounts.create(
                conn, username, data.get("password", ""), data.get("role", ""), data.get("name", "")
            )
    except accounts.AccountError as err:
        return await _accounts_page(
            request,
            refused=err,
            username=username,
            name=data.get("name", ""),
            role=data.get("role", ""),
        )
    return await _accounts_page(request, notice=f"Đã tạo tài khoản {username}.")


@page
async def disable_account(request: web.Request) -> web.StreamResponse:
    desk, data = await posted(request, roles=("admin",))
    username = data.get("username", "")
    if username == desk.account.username:
        raise DeskError(422, "Bạn không thể tự khóa tài khoản của mình.")
    async with request.app[pool_key].connection() as conn:
        done = await accounts.disable(conn, username)
    return await _accounts_page(
        request, notice=f"Đã khóa tài khoản {username}." if done else "Tài khoản đã khóa từ trước."
    )


@page
async def reset_password(request: web.Request) -> web.StreamResponse:
    _, data = await posted(request, roles=("admin",))
    username = data.get("username", "")
    try:
        async with request.app[pool_key].connection() as conn:
            await accounts.set_password(conn, username, data.get("password", ""))
    except accounts.AccountError as err:
        return await _accounts_page(request, refused=err)
    return await _accounts_page(request, notice=f"Đã đặt mật khẩu mới cho {username}.")


# --- API tokens ----------------------------------------------------------------------------------


async def _tokens_page(request: web.Request, *, secret: str = "") -> web.Response:
    desk = await require(request)
    async with request.app[pool_key].connection() as conn:
        mine = await accounts.api_tokens(conn, desk.account.id)
    return render(request, "tokens.html", desk=desk, tokens=mine, secret=secret, labels=labels)


@page
async def tokens_page(request: web.Request) -> web.StreamResponse:
    return await _tokens_page(request)


@page
async def create_token(request: web.Request) -> web.StreamResponse:
    """The secret is shown on this answer only; the token has the account's own role."""
    desk, data = await posted(request)
    name = data.get("name", "").strip()[:100] or "script"
    async with request.app[pool_key].connection() as conn:
        secret = await tokens.create(conn, name, desk.account.role, account_id=desk.account.id)
    return await _tokens_page(request, secret=secret)


@page
async def revoke_token(request: web.Request) -> web.StreamResponse:
    desk, data = await posted(request)
    token_id = data.get("id", "")
    if token_id.isdigit() and len(token_id) < 10:
        async with request.app[pool_key].connection() as conn:
            await accounts.revoke_api_token(conn, desk.account.id, int(token_id))
    raise web.HTTPSeeOther("/desk/token/")
