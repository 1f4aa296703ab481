"""Bearer tokens: who is asking, and may they."""

from __future__ import annotations

import time

from aiohttp import web

from shared import keys, tokens
from shared.problems import Problem
from shared.web import pool_key, redis_key, settings_key

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bantin"'}


async def authenticate(request: web.Request, *, role: str | None = None) -> tokens.Token:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header:
        raise Problem(
            401,
            "Unauthorized",
            "Send the header 'Authorization: Bearer TOKEN'; `bantin token create` makes a token.",
            headers=CHALLENGE,
        )
    if scheme.lower() != "bearer" or not secret.strip():
        raise Problem(
            401,
            "Unauthorized",
            "Use the Bearer scheme: 'Authorization: Bearer TOKEN'.",
            headers=CHALLENGE,
        )
    async with request.app[pool_key].connection() as conn:
        token = await tokens.authenticate(conn, secret.strip())
    if token is None:
        raise Problem(
            401,
            "Unauthorized",
            "This token is unknown or has been revoked.",
            headers={"WWW-Authenticate": 'Bearer realm="bantin", error="invalid_token"'},
        )
    await _rate_limit(request, token)
    if role is not None and token.role != role:
        raise Problem(
            403, "Forbidden", f"This needs a token with the role {role!r}; yours is {token.role!r}."
        )
    return token


async def _rate_limit(request: web.Request, token: tokens.Token) -> None:
    """A fixed window per token and minute: one INCR, shared by every ingest replica."""
    limit = request.app[settings_key].rate_limit_per_minute
    now = time.time()
    window = keys.rate(token.id, int(now // 60))
    pipe = request.app[redis_key].pipeline(transaction=False)
    pipe.incr(window)
    pipe.expire(window, 120)
    count, _ = await pipe.execute()
    if count > limit:
        retry = max(1, 60 - int(now % 60))
        raise Problem(
            429,
            "Too many requests",
            f"This token may make {limit} requests a minute; retry in {retry} s.",
            kind="rate-limited",
            headers={"Retry-After": str(retry)},
        )
