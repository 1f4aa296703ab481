"""Bearer tokens: who is asking, and may they."""

from __future__ import annotations

from aiohttp import web

from shared import tokens
from shared.problems import Problem
from shared.web import pool_key

token_key = web.AppKey("token", tokens.Token)

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
    if role is not None and token.role != role:
        raise Problem(
            403, "Forbidden", f"This needs a token with the role {role!r}; yours is {token.role!r}."
        )
    return token
