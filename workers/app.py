"""All of bantin's Celery wiring: the app, its queues and routes, beat's schedule, and the
per-process resources (database pool, Redis) that tasks use.

Nothing here connects at import time. A process calls `configure(settings)` at its start (the
`bantin worker|beat` entry points, or a service that only sends tasks), and tasks reach the
database through `run()` and `db()`, which open one pool per worker process after the fork.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine
from contextvars import Token
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
from celery import Celery, signals
from redis import Redis

from shared import db, keys
from shared.logs import new_request_id, request_id
from shared.settings import Settings
from shared.tasks import (
    ARTICLE_CHANGED,
    DRAIN_HITS,
    PERSIST_COUNTERS,
    PROCESS_ARTICLE,
    PUBLISH_ARTICLE,
    PUBLISH_MANY,
    REBUILD_FEEDS,
    RENDER_IMAGE,
    RENDER_REST,
    SITE_CHANGED,
    SWEEP,
    WEBSUB_PING,
    broker_conf,
)

T = TypeVar("T")

app = Celery("bantin")

# Task names live in shared/tasks.py (senders use them too); re-exported for the task modules.
__all__ = [
    "ARTICLE_CHANGED",
    "DRAIN_HITS",
    "PERSIST_COUNTERS",
    "PROCESS_ARTICLE",
    "PUBLISH_ARTICLE",
    "PUBLISH_MANY",
    "REBUILD_FEEDS",
    "RENDER_IMAGE",
    "RENDER_REST",
    "SITE_CHANGED",
    "SWEEP",
    "WEBSUB_PING",
    "app",
    "close",
    "configure",
    "pool",
    "redis",
    "run",
    "settings",
]


# Bounded retries of a task that met an outage (Redis, PostgreSQL, the network), with backoff:
# what every task that retries uses, its limits overridden where they differ.
RETRY: dict[str, Any] = {
    "autoretry_for": (OSError, psycopg.OperationalError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 5,
}


def configure(settings: Settings) -> Celery:
    _, redis_url = settings.require_backends()
    app.conf.update(broker_conf(redis_url))
    app.conf.update(
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=1,
        task_acks_on_failure_or_timeout=True,
        task_reject_on_worker_lost=True,
        beat_schedule={
            # Catches what a lost message or a restart would otherwise leave waiting: processing
            # articles nobody is working on, and scheduled articles whose ETA task was lost.
            "sweep": {"task": SWEEP, "schedule": timedelta(seconds=30)},
            # Page views: counted within about a second, copied to PostgreSQL every minute.
            # They expire so that a stopped worker does not come back to a pile of them.
            "drain-hits": {
                "task": DRAIN_HITS,
                "schedule": timedelta(seconds=1),
                "options": {"expires": 5},
            },
            "persist-counters": {
                "task": PERSIST_COUNTERS,
                "schedule": timedelta(seconds=60),
                "options": {"expires": 55},
            },
        },
        include=["workers.publishing", "workers.feeds", "workers.photos", "workers.counters"],
    )
    app.conf.bantin_settings = settings
    return app


def settings() -> Settings:
    value: Settings = app.conf.bantin_settings
    return value


class _Resources:
    """One event loop, one database pool and one Redis client per worker process."""

    def __init__(self) -> None:
        self.pid = -1
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: db.AsyncPool | None = None
        self.redis: Redis | None = None

    def ensure(self) -> asyncio.AbstractEventLoop:
        if self.pid != os.getpid() or self.loop is None:
            # A forked child must not reuse its parent's sockets: build everything anew.
            self.pid = os.getpid()
            self.loop = asyncio.new_event_loop()
            database_url, redis_url = settings().require_backends()
            self.pool = db.async_pool(database_url, max_size=4)
            self.loop.run_until_complete(self.pool.open(wait=True, timeout=30))
            self.redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        return self.loop

    def close(self) -> None:
        """Close what `ensure` opened in this process (a process that ran tasks in place)."""
        if self.pid == os.getpid() and self.loop is not None:
            if self.pool is not None:
                self.loop.run_until_complete(self.pool.close())
            if self.redis is not None:
                self.redis.close()
            self.loop.close()
        self.pid, self.loop, self.pool, self.redis = -1, None, None, None


_resources = _Resources()
close = _resources.close


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine of the shared async data layer from a (synchronous) task."""
    return _resources.ensure().run_until_complete(coro)


def pool() -> db.AsyncPool:
    _resources.ensure()
    assert _resources.pool is not None
    return _resources.pool


def redis() -> Redis:
    _resources.ensure()
    assert _resources.redis is not None
    return _resources.redis


# --- request ids and task statistics ------------------------------------------------------------
# A task carries the id of the request that caused it (a message header), and passes it on to
# the tasks it sends, so one submission can be followed through every log line it caused.
# Every task's outcome and duration go to one Redis hash that /metrics reads.

_started: dict[str, tuple[float, Token[str | None]]] = {}


@signals.before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    current = request_id.get()
    if headers is not None and current and "request_id" not in headers:
        headers["request_id"] = current


@signals.task_prerun.connect
def _task_started(task_id: str = "", task: Any = None, **_: Any) -> None:
    carried = getattr(task.request, "request_id", None) if task is not None else None
    _started[task_id] = (time.perf_counter(), request_id.set(carried or new_request_id()))


@signals.task_postrun.connect
def _task_finished(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    started, token = _started.pop(task_id, (None, None))
    if token is not None:
        request_id.reset(token)
    if task is None or started is None:
        return
    outcome = {"SUCCESS": "succeeded", "RETRY": "retried"}.get(state or "", "failed")
    try:
        pipe = redis().pipeline(transaction=False)
        pipe.hincrby(keys.TASK_STATS, f"{task.name}:{outcome}", 1)
        pipe.hincrbyfloat(keys.TASK_STATS, f"{task.name}:seconds", time.perf_counter() - started)
        pipe.execute()
    except Exception:  # statistics must never fail a task
        logging.getLogger(__name__).debug("task statistics not recorded", exc_info=True)
