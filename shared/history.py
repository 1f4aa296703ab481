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


# Who did it: the account's display name, else its username, else the token's name. With
# EVENTS_FROM (e: article_events, t: tokens, ac: accounts).
WHO = "coalesce(nullif(ac.display_name, ''), ac.username, t.name, '')"
EVENTS_FROM = (
    "article_events e LEFT JOIN tokens t ON t.id = e.token_id"
    " LEFT JOIN accounts ac ON ac.id = t.account_id"
)


async def events(conn: Conn, article_id: int) -> list[Event]:
    """Oldest first."""
    cur = await conn.execute(
        f"SELECT e.action, e.at, e.note, {WHO} AS who FROM {EVENTS_FROM}"
        " WHERE e.article_id = %s ORDER BY e.id",
        (article_id,),
    )
    return [Event(**row) for row in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class Past:
    """An event brought along by a restore: as it was, by this site's token for it."""

    action: str
    at: datetime
    token_id: int | None
    note: str = ""


async def restore(conn: Conn, past: Sequence[tuple[int, Past]]) -> None:
    """Restored articles' events (article id, event), oldest first, in one statement."""
    if not past:
        return
    await conn.execute(
        "INSERT INTO article_events (article_id, token_id, action, note, at)"
        " SELECT * FROM unnest(%s::bigint[], %s::integer[], %s::text[], %s::text[],"
        " %s::timestamptz[])",
        (
            [article_id for article_id, _ in past],
            [e.token_id for _, e in past],
            [e.action for _, e in past],
            [e.note for _, e in past],
            [e.at for _, e in past],
        ),
    )
