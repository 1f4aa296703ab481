"""The publisher's buffer of views, and the task that sends it to the stream.

A view costs a dictionary update: the buffer maps the stream's lines to their number of views.
The flusher sends it every FLUSH_INTERVAL, or once FLUSH_AT different views wait, in batches of
at most FLUSH_AT lines, each appended once whatever becomes of the answer (stream.append). One
entry a batch, not one a view: a XADD, a delivery and a deletion a view were most of what
counting cost Redis. While Redis is away the batches wait (at most MAX_HELD lines); the app's
shutdown flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.counting.stream import Batch, View, append

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.1  # seconds: the longest a view waits in the process
FLUSH_AT = 2000  # different views that wake the flusher, and the largest batch
MAX_HELD = 200_000  # lines held while Redis is unreachable; beyond, the oldest are dropped
CLOSE_WAIT = 10.0  # seconds the flusher has to stop on shutdown


class Buffer:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.interval, self.flush_at, self.dropped = FLUSH_INTERVAL, FLUSH_AT, 0
        self.lines: dict[str, int] = {}  # the stream's lines -> their number of views
        self._batches: deque[Batch] = deque()  # not known to be in Redis yet, oldest first
        self._held = 0  # lines in _batches
        self._wake, self._lock = asyncio.Event(), asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def add(self, view: View) -> None:
        line = view.line()
        self.lines[line] = self.lines.get(line, 0) + 1
        if len(self.lines) >= self.flush_at:
            self._wake.set()

    def buffered(self) -> list[tuple[int, str]]:
        """The views not sent yet, as (how many, their line), oldest first."""
        return [(n, line) for line, n in self.lines.items()]

    @property
    def waiting(self) -> int:
        """Views in this process not known to be in the stream yet."""
        return sum(self.lines.values()) + sum(batch.views for batch in self._batches)

    async def flush(self) -> int:
        """Send every waiting view; returns how many went. Raises on a Redis error, keeping what
        was not sent (with its token) for the next attempt."""
        async with self._lock:
            items, self.lines = list(self.lines.items()), {}
            for i in range(0, len(items), self.flush_at):
                part = items[i : i + self.flush_at]
                lines = [line if n == 1 else f"*{n} {line}" for line, n in part]
                self._batches.append(Batch(secrets.token_hex(12), sum(n for _, n in part), lines))
            self._held += len(items)
            while self._held > MAX_HELD and len(self._batches) > 1:
                lost = self._batches.popleft()
                self._held -= len(lost.lines)
                self.dropped += lost.views
                log.error("Redis unreachable: dropped %d page views (%d)", lost.views, self.dropped)
            sent = 0
            while self._batches:
                await append(self.redis, self._batches[0])
                batch = self._batches.popleft()
                self._held -= len(batch.lines)
                sent += batch.views
            return sent

    async def run(self) -> None:
        failing = False
        while not self._closing:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the event is set (CPython gh-86296).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("cannot send page views to Redis (%s); holding them", err)
                failing = True
                await asyncio.sleep(1)  # do not spin on a dead Redis
            else:
                if failing:
                    log.info("page views reach Redis again")
                failing = False

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self.run(), name="bantin-hits-flusher")

    async def close(self) -> None:
        """Stop the flusher, then send everything left (a few attempts: Redis may blink). The
        flusher is asked to stop, not cancelled: the Redis client's error handling, or
        asyncio.timeout on 3.11, can swallow a cancellation, and it would be awaited for ever.
        It is cancelled only if it has not stopped after CLOSE_WAIT seconds."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            done, _ = await asyncio.wait({self._task}, timeout=CLOSE_WAIT)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            elif not self._task.cancelled() and self._task.exception() is not None:
                log.error("the page-view flusher had stopped", exc_info=self._task.exception())
            self._task = None
        for attempt in range(3):
            try:
                await self.flush()
                return
            except (RedisError, OSError) as err:
                log.warning("final flush of page views failed (%s), attempt %d", err, attempt + 1)
                await asyncio.sleep(0.5)
        log.error("shutting down with %d page views not sent", self.waiting)
