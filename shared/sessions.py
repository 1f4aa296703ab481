"""Server-side sessions in Redis: the cookie carries only a random id; what the session knows
(the account, its CSRF token) stays on the server and ends after an idle time."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from shared import keys


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    account_id: int
    csrf: str


async def start(redis: Redis, account_id: int, idle_seconds: int) -> Session:
    """A new session with a new id (an id from before sign-in is never reused: no fixation)."""
    session = Session(secrets.token_urlsafe(32), account_id, secrets.token_urlsafe(32))
    await redis.set(
        keys.session(session.sid),
        json.dumps({"account_id": account_id, "csrf": session.csrf}),
        ex=idle_seconds,
    )
    return session


async def load(redis: Redis, sid: str, idle_seconds: int) -> Session | None:
    """The live session with this id, its idle clock restarted; None when it has ended."""
    if not sid or len(sid) > 100:
        return None
    key = keys.session(sid)
    pipe = redis.pipeline(transaction=False)
    pipe.get(key)
    pipe.expire(key, idle_seconds)  # a no-op when the key has gone
    raw, _ = await pipe.execute()
    if raw is None:
        return None
    data = json.loads(raw)
    return Session(sid, int(data["account_id"]), str(data["csrf"]))


async def end(redis: Redis, sid: str) -> None:
    await redis.delete(keys.session(sid))
