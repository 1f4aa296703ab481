"""Idempotency-Key for POST, after the IETF httpapi draft: the same key and the same request
replay the first answer; the same key with another request is refused (422); the same key while
the first request is still running is a conflict (409). Keys are kept 24 hours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from shared.articles import Conn
from shared.problems import Problem

KEEP_HOURS = 24
MAX_KEY = 255


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    response: dict[str, Any]


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip().strip('"')
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise Problem(
            400,
            "Bad Idempotency-Key",
            f"Idempotency-Key must be 1 to {MAX_KEY} printable characters.",
            kind="bad-idempotency-key",
        )
    return key


async def claim(conn: Conn, token_id: int, key: str, fingerprint: str) -> Replay | None:
    """Claim the key for this request (None), or say what the first request with it gave."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE token_id = %s AND key = %s"
        " AND created_at < now() - make_interval(hours => %s)",
        (token_id, key, KEEP_HOURS),
    )
    cur = await conn.execute(
        "INSERT INTO idempotency_keys (token_id, key, request_hash) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING key",
        (token_id, key, fingerprint),
    )
    if await cur.fetchone():
        return None
    cur = await conn.execute(
        "SELECT request_hash, status, response FROM idempotency_keys"
        " WHERE token_id = %s AND key = %s",
        (token_id, key),
    )
    row = await cur.fetchone()
    if row is None:  # expired and deleted between our two statements: try once more
        return await claim(conn, token_id, key, fingerprint)
    if row["request_hash"] != fingerprint:
        raise Problem(
            422,
            "Idempotency-Key reused",
            "This Idempotency-Key was used with a"
            " different request; use a new key for a new article.",
            kind="idempotency-key-reused",
        )
    if row["status"] is None:
        raise Problem(
            409,
            "Request in progress",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            kind="idempotency-in-progress",
            headers={"Retry-After": "1"},
        )
    return Replay(row["status"], row["response"])


async def complete(
    conn: Conn, token_id: int, key: str, status: int, response: dict[str, Any]
) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status = %s, response = %s WHERE token_id = %s AND key = %s",
        (status, Jsonb(response), token_id, key),
    )


async def release(conn: Conn, token_id: int, key: str) -> None:
    """The request failed before it did anything: let a retry with the same key run."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE token_id = %s AND key = %s AND status IS NULL",
        (token_id, key),
    )
