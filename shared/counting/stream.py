"""The Redis stream `keys.HITS_STREAM` between the publishers and the counters worker.

An entry is one publisher's batch, two fields: `n`, its number of views, and `b`, its lines
joined by newlines, one line a different view: "<unix seconds> <bot 0|1> <article id or
nothing> <visitor> <path>" (`View.line`). Identical views of one second are one line with
their number first, "*<views> <seconds> ...". The visitor (cookie characters or a hex hash)
holds no space; the path comes last and holds anything but a newline (sent as %0A).

An append claims the batch's random token first (SET NX with an expiry), so a batch sent again
after a lost answer (a timeout after Redis applied it) is a no-op. The views waiting in the
stream (its lag) are counted beside it, `keys.HITS_WAITING`, raised by the append and lowered
by the drain; the stream is bounded by that count (STREAM_MAXLEN views), not by its entries.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib.resources import files
from typing import Any, NamedTuple

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError

from shared import keys

FIELDS = ("n", "b")
STREAM_MAXLEN = 1_000_000  # views the stream holds at most: beyond, the oldest batches go
TRIM_STEP = 100  # entries one append deletes at most to stay within STREAM_MAXLEN
BATCH_TOKEN_TTL = 600  # seconds a batch's token guards against a repeated append


class View(NamedTuple):
    """One view as its parts; `line()` is how the stream holds it."""

    visitor: str
    path: str
    article: str  # "" when the page is no article's
    seconds: str  # unix seconds
    bot: str  # "1" or "0"

    def line(self) -> str:
        return f"{self.seconds} {self.bot} {self.article} {self.visitor} {self.path}"


class Batch(NamedTuple):
    """Lines on their way to the stream, under the token that makes their append happen once."""

    token: str
    views: int
    lines: list[str]


@cache
def lua(name: str) -> str:
    """The text of the script `name`.lua of this package."""
    return (files(__package__) / f"{name}.lua").read_text(encoding="utf-8")


@lru_cache(maxsize=32)
def script(r: Redis | AsyncRedis, name: str) -> Any:
    """The script `name`.lua registered with the client `r` (once per client)."""
    return r.register_script(lua(name))


async def append(redis: AsyncRedis, batch: Batch) -> None:
    """One batch in the stream, once, however many times it is sent."""
    joined = "\n".join(batch.lines)
    if joined.count("\n") >= len(batch.lines):  # a path held a newline
        joined = "\n".join(line.replace("\n", "%0A") for line in batch.lines)
    # A path's bytes that were not UTF-8 came as surrogates: sent back as they came.
    await script(redis, "append")(
        keys=[keys.HITS_STREAM, keys.hits_batch(batch.token), keys.HITS_WAITING],
        args=[
            STREAM_MAXLEN,
            BATCH_TOKEN_TTL,
            batch.views,
            joined.encode("utf-8", "surrogateescape"),
            TRIM_STEP,
        ],
    )


def ensure_group(r: Redis) -> None:
    """From id 0, not $: a group created after the stream (Redis emptied, then refilled by the
    publishers before the first drain) must still read what is already there."""
    try:
        r.xgroup_create(keys.HITS_STREAM, keys.HITS_GROUP, id="0", mkstream=True)
    except ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


async def lag(redis: AsyncRedis) -> int:
    """Views in the stream not counted yet (for /metrics; Redis 6.2 has no XINFO lag)."""
    return max(0, int(await redis.get(keys.HITS_WAITING) or 0))
