"""The Redis stream between the publishers and the counters worker, and its one format.

An entry is one publisher's batch, two fields: `n`, its number of views, and `b`, its lines
joined by newlines, one a different view: "<unix seconds> <bot 0|1> <article id or nothing>
<visitor> <path>"; identical views of one second are one line with their number first,
"*<views> <seconds> ...". The visitor holds no space, the path no newline (sent as %0A).
The views waiting (the lag) are counted beside the stream, `keys.HITS_WAITING`: raised by the
append, lowered by the drain, and the stream's bound (STREAM_MAXLEN views).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any, NamedTuple

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from shared import keys

STREAM_MAXLEN = 1_000_000  # views the stream holds at most: beyond, the oldest batches go
TRIM_STEP = 100  # entries one append deletes at most to stay within STREAM_MAXLEN
BATCH_TOKEN_TTL = 600  # seconds a batch's token guards against a repeated append


class Batch(NamedTuple):
    token: str  # makes its append happen once
    views: int
    lines: list[str]


@lru_cache(maxsize=32)
def script(r: Redis | AsyncRedis, name: str) -> Any:
    """The script `name`.lua of this package, registered with the client `r`."""
    return r.register_script((files(__package__) / f"{name}.lua").read_text(encoding="utf-8"))


async def append(redis: AsyncRedis, batch: Batch) -> None:
    """Append the batch once (append.lua), whatever becomes of the answer."""
    # a path's newline goes as %0A; bytes not UTF-8 in it as they came
    text = "\n".join(line.replace("\n", "%0A") for line in batch.lines)
    body = text.encode(errors="surrogateescape")
    args = [STREAM_MAXLEN, TRIM_STEP, BATCH_TOKEN_TTL, batch.views, body]
    batch_keys = [keys.HITS_STREAM, keys.hits_batch(batch.token), keys.HITS_WAITING]
    await script(redis, "append")(keys=batch_keys, args=args)
