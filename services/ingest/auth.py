"""Bearer tokens: who is asking, and may they."""

from __future__ import annotations

import time

from aiohttp import web

from shared import keys, tokens
from shared.problems import Problem
from shared.web import client_address, pool_key, redis_key, settings_key

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bantin"'}
# Unknown tokens an address may try in a minute; then it waits for the next minute, whatever
# it sends: guessing tokens (or a script retrying a revoked one) costs a lookup each.
FAILED_PER_MINUTE = 30


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
    address = client_address(request, request.app[settings_key].proxy_networks)
    await _refuse_guessers(request, address)
    token = None
    if secret.isascii():  # ours are; other bytes cannot name one
        async with request.app[pool_key].connection() as conn:
            token = await tokens.authenticate(conn, secret.strip())
    if token is None:
        await _count_failure(request, address)
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
    if await _count(request, keys.rate(token.id, _minute())) > limit:
        raise _too_many(f"This token may make {limit} requests a minute")


async def _refuse_guessers(request: web.Request, address: str) -> None:
    """429 for an address that sent FAILED_PER_MINUTE unknown tokens this minute."""
    failed = await request.app[redis_key].get(keys.failed_auth(address, _minute()))
    if failed is not None and int(failed) >= FAILED_PER_MINUTE:
        raise _too_many("Too many unknown tokens from this address")


async def _count_failure(request: web.Request, address: str) -> None:
    await _count(request, keys.failed_auth(address, _minute()))


def _minute() -> int:
    return int(time.time() // 60)


async def _count(request: web.Request, window: str) -> int:
    pipe = request.app[redis_key].pipeline(transaction=False)
    pipe.incr(window)
    pipe.expire(window, 120)
    count, _ = await pipe.execute()
    return int(count)


def _too_many(what: str) -> Problem:
    retry = max(1, 60 - int(time.time() % 60))
    return Problem(
        429,
        "Too many requests",
        f"{what}; retry in {retry} s.",
        kind="rate-limited",
        headers={"Retry-After": str(retry)},
    )
