"""The publisher's buffer of views and the task that moves it to the stream.

Each view costs a dictionary update: the buffer maps the stream's lines to how many views each
holds. A flusher task sends it every FLUSH_INTERVAL, or sooner once FLUSH_AT different views
wait, in batches of at most FLUSH_AT lines (stream.append, once per batch whatever happens to
the answer). One entry a batch, not one a view: an XADD, a delivery and a deletion per view
were most of what counting cost Redis. A graceful shutdown flushes what is left.
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
# Different views (lines) that wake the flusher early; also the largest batch. Each flush costs
# about 150 us of the Redis client's Python whatever its size.
FLUSH_AT = 2000
MAX_HELD = 200_000  # lines kept while Redis is unreachable; beyond, the oldest are dropped
CLOSE_WAIT = 10.0  # seconds the flusher has to stop on shutdown


class Buffer:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.interval = FLUSH_INTERVAL
        self.flush_at = FLUSH_AT
        self.dropped = 0
        self.lines: dict[str, int] = {}  # the stream's lines -> how many views each holds
        self._batches: deque[Batch] = deque()  # not known to be in Redis yet, oldest first
        self._held = 0  # lines in _batches
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def add(self, view: View) -> None:
        line = view.line()
        self.lines[line] = self.lines.get(line, 0) + 1
        if len(self.lines) >= self.flush_at:
            self._wake.set()

    def buffered(self) -> list[tuple[int, str]]:
        """The views not sent yet, as (how many, the line the stream will hold), oldest first."""
        return [(n, line) for line, n in self.lines.items()]

    @property
    def waiting(self) -> int:
        """Views in this process not known to be in the stream yet."""
        return sum(self.lines.values()) + sum(batch.views for batch in self._batches)

    async def flush(self) -> int:
        """Send every waiting view; returns how many went. Raises on a Redis error, keeping what
        was not sent (with its token) for the next attempt."""
        async with self._lock:
            if self.lines:
                items = list(self.lines.items())
                self.lines = {}
                for i in range(0, len(items), self.flush_at):
                    part = items[i : i + self.flush_at]
                    lines = [line if n == 1 else f"*{n} {line}" for line, n in part]
                    views = sum(n for _, n in part)
                    self._batches.append(Batch(secrets.token_hex(12), views, lines))
                self._held += len(items)
                self._shed()
            sent = 0
            while self._batches:
                batch = self._batches[0]
                await append(self.redis, batch)
                self._batches.popleft()
                self._held -= len(batch.lines)
                sent += batch.views
            return sent

    def _shed(self) -> None:
        """Bound the memory a long Redis outage takes: drop the oldest batches."""
        while self._held > MAX_HELD and len(self._batches) > 1:
            batch = self._batches.popleft()
            self._held -= len(batch.lines)
            self.dropped += batch.views
            log.error(
                "Redis unreachable: dropped %d page views (%d in all)", batch.views, self.dropped
            )

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
                await asyncio.sleep(1)  # the buffer keeps growing; do not spin on a dead Redis
            else:
                if failing:
                    log.info("page views reach Redis again")
                failing = False

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self.run(), name="bantin-hits-flusher")

    async def close(self) -> None:
        """Stop the flusher, then send everything left (a few attempts: Redis may blink).

        The flusher is asked to stop, not cancelled: a cancellation can be swallowed inside its
        loop (by the Redis client's error handling, or by asyncio.timeout expiring at the same
        moment on Python 3.11), and it would then be waited for ever. It is cancelled only if it
        does not stop within CLOSE_WAIT seconds (a Redis call stuck past its socket timeout)."""
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
