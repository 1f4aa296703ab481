"""API tokens: random, shown once, stored as SHA-256, checked with one indexed lookup."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

PREFIX = "bt_"


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    account_id: int | None = None  # tokens made in the desk belong to an account


COLUMNS = "id, name, role, created_at, last_used_at, revoked_at, account_id"
# Roles that see, edit and review everyone's articles.
EDITORS = ("editor", "admin")


def new_secret() -> str:
    """32 random bytes; the prefix makes leaked tokens easy to recognise in logs and scanners."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create(
    conn: AsyncConnection[Any],
    name: str,
    role: str,
    secret: str | None = None,
    *,
    account_id: int | None = None,
    desk: bool = False,
) -> str:
    """Store a new token and return its secret: the only time anyone sees it."""
    secret = secret or new_secret()
    await conn.execute(
        "INSERT INTO tokens (name, role, token_hash, account_id, desk) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (token_hash) DO UPDATE SET revoked_at = NULL, role = EXCLUDED.role",
        (name, role, digest(secret), account_id, desk),
    )
    return secret


# Last use is recorded at most this often: writing it on every request would make every API
# call a write (and a disk flush), and concurrent requests with one token would queue on its row.
LAST_USE_RESOLUTION = 60


async def authenticate(conn: AsyncConnection[Any], secret: str) -> Token | None:
    """The live token with this secret, or None. Revocation takes effect at once: nothing is
    cached between requests."""
    cur = await conn.execute(
        f"SELECT {COLUMNS},"
        " last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %s) AS stale"
        " FROM tokens WHERE token_hash = %s AND revoked_at IS NULL",
        (LAST_USE_RESOLUTION, digest(secret)),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    if row.pop("stale"):
        # SKIP LOCKED: if another request is recording it right now, that one will do.
        await conn.execute(
            "UPDATE tokens SET last_used_at = now() WHERE id = ("
            " SELECT id FROM tokens WHERE id = %s FOR UPDATE SKIP LOCKED)",
            (row["id"],),
        )
    return Token(**row)


async def list_all(conn: AsyncConnection[Any]) -> list[Token]:
    cur = await conn.execute(f"SELECT {COLUMNS} FROM tokens ORDER BY id")
    return [Token(**row) for row in await cur.fetchall()]


async def revoke(conn: AsyncConnection[Any], token_id: int) -> bool:
    cur = await conn.execute(
        "UPDATE tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (token_id,)
    )
    return cur.rowcount == 1


async def visible_to(conn: AsyncConnection[Any], token: Token) -> list[int] | None:
    """The tokens whose articles `token` may see: None (every article) for editors and admins;
    for a submitter, this token and the other tokens of its account (the desk's, or a
    script's)."""
    if token.role in EDITORS:
        return None
    if token.account_id is None:
        return [token.id]
    cur = await conn.execute("SELECT id FROM tokens WHERE account_id = %s", (token.account_id,))
    return [row["id"] for row in await cur.fetchall()]


async def may_see(conn: AsyncConnection[Any], token: Token, submitted_by: int | None) -> bool:
    """Whether `token` may see an article sent with the token `submitted_by`."""
    if token.role in EDITORS or submitted_by == token.id:
        return True
    visible = await visible_to(conn, token)
    return visible is None or submitted_by in visible
