"""The desk's plumbing: who is signed in, CSRF, the sign-in throttle, and pages rendered with
their security headers. Desk pages answer in HTML (never problem+json): office staff read them."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jinja2
from aiohttp import web

from shared import accounts, keys, sessions
from shared.accounts import Account
from shared.tokens import Token
from shared.web import client_address, pool_key, redis_key, settings_key

templates_key = web.AppKey("desk_templates", jinja2.Environment)
COOKIE = "bantin_desk"
SIGN_IN_COOKIE = "bantin_desk_signin"  # the sign-in form's CSRF token (double submit)
CSRF_FIELD = "csrf"
# Failed sign-ins: more than LIMIT for one account or one address within WINDOW seconds.
LIMIT = 10
WINDOW = 600


class DeskError(Exception):
    """Answered as a calm page that says what happened, in Vietnamese."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class Desk:
    """The person at the desk: their account, the token the desk acts through for them, and
    their session."""

    account: Account
    token: Token
    session: sessions.Session

    @property
    def csrf(self) -> str:
        return self.session.csrf


desk_key = web.RequestKey("desk", Desk)  # who is signed in, looked up once per request


def security_headers(request: web.Request) -> dict[str, str]:
    """A strict policy: nothing but bantin's own scripts and styles; photos from the site too."""
    site = request.app[settings_key].site_url()
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
            f" img-src 'self' blob: data: {site}; font-src 'self'; form-action 'self';"
            " frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def render(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> web.Response:
    env = request.app[templates_key]
    html = env.get_template(template).render(request=request, **context)
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        headers={**security_headers(request), **(headers or {})},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(handler: Handler) -> Handler:
    """A desk view: its DeskErrors become pages."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except DeskError as err:
            desk = await current(request)
            return render(
                request,
                "error.html",
                status=err.status,
                headers=err.headers,
                desk=desk,
                message=err.message,
            )

    return wrapped


def idle_seconds(request: web.Request) -> int:
    return request.app[settings_key].session_idle_minutes * 60


async def current(request: web.Request) -> Desk | None:
    """The signed-in person, or None (no cookie, session ended, account disabled)."""
    cached = request.get(desk_key)
    if cached is not None:
        return cached
    sid = request.cookies.get(COOKIE, "")
    if not sid:
        return None
    session = await sessions.load(request.app[redis_key], sid, idle_seconds(request))
    if session is None:
        return None
    async with request.app[pool_key].connection() as conn:
        account = await accounts.by_id(conn, session.account_id)
        token = None
        if account is not None and account.disabled_at is None:
            token = await accounts.desk_token(conn, account)
    if account is None or token is None:
        await sessions.end(request.app[redis_key], sid)
        return None
    request[desk_key] = desk = Desk(account, token, session)
    return desk


async def require(request: web.Request, *, roles: tuple[str, ...] = ()) -> Desk:
    desk = await current(request)
    if desk is None:
        raise web.HTTPSeeOther("/desk/")
    if roles and desk.account.role not in roles:
        raise DeskError(403, "Tài khoản của bạn không có quyền dùng trang này.")
    return desk


def check_csrf(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise DeskError(
            403,
            "Phiên làm việc không hợp lệ hoặc đã hết hạn, nên thao tác chưa được thực hiện."
            " Hãy tải lại trang rồi thử lại.",
        )


async def form(request: web.Request, desk: Desk) -> dict[str, str]:
    """A posted urlencoded form, after its CSRF token is checked."""
    data = await request.post()
    check_csrf(desk.csrf, _text(data.get(CSRF_FIELD)))
    return {k: v for k, v in data.items() if isinstance(v, str)}


async def posted(
    request: web.Request, *, roles: tuple[str, ...] = ()
) -> tuple[Desk, dict[str, str]]:
    """A form posted by a signed-in account with one of `roles` (any if none), CSRF checked."""
    desk = await require(request, roles=roles)
    return desk, await form(request, desk)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def set_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, samesite: str
) -> None:
    """A desk cookie: HttpOnly, for /desk/ only, Secure when the site is served over HTTPS."""
    secure = request.app[settings_key].public_url.startswith("https://")
    response.set_cookie(name, value, path="/desk/", httponly=True, samesite=samesite, secure=secure)


# --- the sign-in throttle ----


def _throttle_keys(request: web.Request, username: str) -> list[str]:
    address = client_address(request, request.app[settings_key].proxy_networks)
    return [keys.sign_in_failures("user", username), keys.sign_in_failures("addr", address)]


async def wait_before_sign_in(request: web.Request, username: str) -> int:
    """Seconds until this account and address may try again (0: now)."""
    redis = request.app[redis_key]
    names = _throttle_keys(request, username)
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.get(name)
        pipe.ttl(name)
    got = await pipe.execute()
    wait = 0
    for count, ttl in zip(got[::2], got[1::2], strict=True):
        if count is not None and int(count) > LIMIT:
            wait = max(wait, int(ttl) if ttl and ttl > 0 else 1)
    return wait


async def count_failure(request: web.Request, username: str) -> int:
    """Count a failed sign-in; the seconds to wait when this one went over the limit."""
    redis = request.app[redis_key]
    pipe = redis.pipeline(transaction=False)
    for name in _throttle_keys(request, username):
        pipe.set(name, 0, ex=WINDOW, nx=True)  # the window starts at the first failure
        pipe.incr(name)
    got = await pipe.execute()
    if max(int(c) for c in got[1::2]) > LIMIT:
        return await wait_before_sign_in(request, username) or WINDOW
    return 0


def too_many(wait: int) -> DeskError:
    minutes = max(1, (wait + 59) // 60)
    return DeskError(
        429,
        f"Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau khoảng {minutes} phút.",
        headers={"Retry-After": str(wait)},
    )
