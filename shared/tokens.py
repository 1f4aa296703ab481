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


def new_secret() -> str:
    """32 random bytes; the prefix makes leaked tokens easy to recognise in logs and scanners."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create(
    conn: AsyncConnection[Any], name: str, role: str, secret: str | None = None
) -> str:
    """Store a new token and return its secret: the only time anyone sees it."""
    secret = secret or new_secret()
    await conn.execute(
        "INSERT INTO tokens (name, role, token_hash) VALUES (%s, %s, %s)"
        " ON CONFLICT (token_hash) DO UPDATE SET revoked_at = NULL, role = EXCLUDED.role",
        (name, role, digest(secret)),
    )
    return secret


async def authenticate(conn: AsyncConnection[Any], secret: str) -> Token | None:
    """The live token with this secret (recording its use), or None."""
    cur = await conn.execute(
        "UPDATE tokens SET last_used_at = now() WHERE token_hash = %s AND revoked_at IS NULL"
        " RETURNING id, name, role, created_at, last_used_at, revoked_at",
        (digest(secret),),
    )
    row = await cur.fetchone()
    return Token(**row) if row else None


async def list_all(conn: AsyncConnection[Any]) -> list[Token]:
    cur = await conn.execute(
        "SELECT id, name, role, created_at, last_used_at, revoked_at FROM tokens ORDER BY id"
    )
    return [Token(**row) for row in await cur.fetchall()]


async def revoke(conn: AsyncConnection[Any], token_id: int) -> bool:
    cur = await conn.execute(
        "UPDATE tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (token_id,)
    )
    return cur.rowcount == 1
