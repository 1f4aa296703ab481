"""The counters' Celery tasks (shared/counting does the counting): drain the page views every
second, copy the counters to PostgreSQL every minute, and drain and copy everything when a
worker consuming the counters queue stops. (An emptied Redis is refilled by the next drain.)"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_shutdown
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


@worker_shutdown.connect
def _copy_before_stop(sender: Any = None, **kwargs: Any) -> None:
    """A graceful stop of a worker of the counters queue: drain what the publishers sent, then
    copy to PostgreSQL, so that a Redis emptied after the stop loses no view. Celery sends this
    in the main process once the pool has finished its tasks, outside any task: the client is
    its own, and a failure is logged, never raised into the stop."""
    if sender is None or ROUTES[PERSIST_COUNTERS] not in sender.app.amqp.queues.consume_from:
        return
    try:
        s = settings()
        database_url, redis_url = s.require_backends()
        with Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5) as r:
            log.info(
                "counters copied before the stop: %s", count.before_stop(r, database_url, s.zone)
            )
    except Exception:
        log.exception("counters: the copy before the stop failed")
