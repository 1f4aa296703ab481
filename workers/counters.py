"""The counters' Celery tasks (shared/counting does the counting): drain the page views every
second, copy the counters to PostgreSQL every minute, refill an emptied Redis when a worker
starts, and drain and copy everything when a worker consuming the counters queue stops."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import psycopg
from celery.signals import worker_ready, worker_shutdown
from redis import Redis

from shared.counting import count, persist
from workers.app import DRAIN_HITS, PERSIST_COUNTERS, app, redis, settings

log = logging.getLogger(__name__)


class _QuietDrains(logging.Filter):
    """Celery logs every task received and succeeded at INFO: for a drain every second that is
    two lines a second of nothing. Failures (logged at ERROR) still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            record.levelno <= logging.INFO
            and isinstance(args, dict)
            and args.get("name") == DRAIN_HITS
        )


for _name in ("celery.app.trace", "celery.worker.strategy"):
    if not any(isinstance(f, _QuietDrains) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_QuietDrains())


def consumer_name() -> str:
    """One consumer per worker process: what a dead process held is visible as its own."""
    return f"{socket.gethostname()}-{os.getpid()}"


@app.task(name=DRAIN_HITS, ignore_result=True)
def drain_hits(budget: float = count.DRAIN_BUDGET) -> dict[str, int]:
    """No retries nor acks_late: beat sends the next drain a second later."""
    s = settings()
    return count.drain(
        redis(), s.zone, s.require_backends()[0], consumer=consumer_name(), budget=budget
    )


@app.task(
    name=PERSIST_COUNTERS,
    ignore_result=True,
    autoretry_for=(OSError, psycopg.OperationalError),
    retry_backoff=True,
    max_retries=3,
)
def persist_counters() -> dict[str, int]:
    s = settings()
    return persist.persist(redis(), s.require_backends()[0], s.zone)


def _counting_worker(sender: Any) -> bool:
    queues = getattr(getattr(getattr(sender, "app", None), "amqp", None), "queues", None)
    return queues is None or "counters" in getattr(queues, "consume_from", {"counters": 1})


@worker_ready.connect
def _restore_at_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker starting after Redis lost its data refills it before the first drain (the drain
    would too; this makes the page's counters right without waiting for a view)."""
    try:
        s = settings()
        database_url, redis_url = s.require_backends()
        with Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5) as r:
            persist.restore(r, database_url, s.zone)
    except Exception:
        log.exception("could not check the counters at worker start; the drain will")


@worker_shutdown.connect
def _copy_before_stop(sender: Any = None, **kwargs: Any) -> None:
    """A graceful stop (SIGTERM) of a worker that counts: drain what the publishers sent, then
    copy to PostgreSQL, so that a Redis emptied after the stop loses no view. Sent by Celery
    in the main process once the pool has finished its tasks."""
    if not _counting_worker(sender):
        return
    try:
        s = settings()
        database_url, redis_url = s.require_backends()
        with Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5) as r:
            done = persist.before_stop(r, database_url, s.zone, consumer_name())
        log.info("counters copied to PostgreSQL before the stop: %s", done)
    except Exception:
        log.exception("could not copy the counters before the stop")
