"""Each article's history: who submitted, edited, approved, returned or unpublished it, when."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

Conn = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Event:
    action: str  # submitted | edited | resubmitted | approved | returned | unpublished
    at: datetime
    who: str  # the account's display name, else its username, else the token's name
    note: str = ""


async def record(conn: Conn, article_id: int, token_id: int, action: str, note: str = "") -> None:
    await record_many(conn, [article_id], token_id, action, note)


async def record_many(
    conn: Conn, article_ids: Sequence[int], token_id: int, action: str, note: str = ""
) -> None:
    """The same event for many articles (a batch's), in one statement."""
    await conn.execute(
        "INSERT INTO article_events (article_id, token_id, action, note)"
        " SELECT unnest(%s::bigint[]), %s, %s, %s",
        (list(article_ids), token_id, action, note),
    )


async def events(conn: Conn, article_id: int) -> list[Event]:
    """Oldest first."""
    cur = await conn.execute(
        "SELECT e.action, e.at, e.note,"
        " coalesce(nullif(a.display_name, ''), a.username, t.name, '') AS who"
        " FROM article_events e LEFT JOIN tokens t ON t.id = e.token_id"
        " LEFT JOIN accounts a ON a.id = t.account_id"
        " WHERE e.article_id = %s ORDER BY e.id",
        (article_id,),
    )
    return [Event(**row) for row in await cur.fetchall()]
