"""The counters' Celery tasks (shared/counting does the counting): drain the page views every
second, copy the counters to PostgreSQL every minute, refill an emptied Redis when a worker
starts, and drain and copy everything when a worker consuming the counters queue stops."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from redis import Redis

from shared.counting import count
from shared.tasks import ROUTES
from workers.app import DRAIN_HITS, PERSIST_COUNTERS, RETRY, app, redis, settings

log = logging.getLogger(__name__)


def _not_a_drain(record: logging.LogRecord) -> bool:
    """Celery logs every task received and succeeded at INFO: for a drain every second that is
    two lines a second of nothing. Failures (logged at ERROR) still show."""
    args = record.args
    return (
        record.levelno > logging.INFO
        or not isinstance(args, dict)
        or args.get("name") != DRAIN_HITS
    )


for _name in ("celery.app.trace", "celery.worker.strategy"):
    logging.getLogger(_name).addFilter(_not_a_drain)  # added once: addFilter skips a known one


@app.task(name=DRAIN_HITS, ignore_result=True)
def drain_hits(budget: float = count.DRAIN_BUDGET) -> dict[str, int]:
    """No retries nor acks_late: beat sends the next drain a second later."""
    s = settings()
    return count.drain(redis(), s.zone, s.require_backends()[0], budget)


@app.task(name=PERSIST_COUNTERS, ignore_result=True, **{**RETRY, "max_retries": 3})
def persist_counters() -> dict[str, int]:
    s = settings()
    return count.persist(redis(), s.require_backends()[0], s.zone)


def _with_redis(what: str, work: Any) -> None:
    """Run `work(redis, database_url, zone)` with a client of its own (Celery's signals come
    outside any task); a failure is logged, never raised into the worker's start or stop."""
    try:
        s = settings()
        database_url, redis_url = s.require_backends()
        with Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5) as r:
            log.info("counters %s: %s", what, work(r, database_url, s.zone))
    except Exception:
        log.exception("counters %s failed", what)


@worker_ready.connect
def _restore_at_start(**kwargs: Any) -> None:
    """A worker starting after Redis lost its data refills it before the first drain (the drain
    would too; this makes the page's counters right without waiting for a view)."""
    _with_redis("restored at start", count.restore)


@worker_shutdown.connect
def _copy_before_stop(sender: Any = None, **kwargs: Any) -> None:
    """A graceful stop of a worker of the counters queue: drain what the publishers sent, then
    copy to PostgreSQL, so that a Redis emptied after the stop loses no view. Celery sends this
    in the main process once the pool has finished its tasks."""
    if sender is not None and ROUTES[PERSIST_COUNTERS] in sender.app.amqp.queues.consume_from:
        _with_redis("copied before the stop", count.before_stop)
