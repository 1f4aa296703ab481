"""Task names, their queues, and how a service sends one.

The names are the contract between senders (ingest, beat, the importer) and workers. A service
sends by name through `TaskSender`, a Celery client that knows no task code: services never
import workers/. workers/app.py takes its routes from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from shared.logs import request_id

if TYPE_CHECKING:
    from celery import Celery

# Celery and kombu are imported where they are used, not here: the publisher reads QUEUES (its
# /metrics) and sends no task, and need not carry Celery for that.

log = logging.getLogger(__name__)

PROCESS_ARTICLE = "bantin.process_article"
PUBLISH_ARTICLE = "bantin.publish_article"
# Sent by ingest before 2026-12-04 (a batch's due articles); only received now, by workers
# taking over a queue an older ingest filled. To remove once no site upgrades from before.
PUBLISH_MANY = "bantin.publish_many"
SWEEP = "bantin.sweep"
REBUILD_FEEDS = "bantin.rebuild_feeds"
ARTICLE_CHANGED = "bantin.article_changed"
SITE_CHANGED = "bantin.site_changed"
RENDER_IMAGE = "bantin.render_image"
RENDER_REST = "bantin.render_rest"
WEBSUB_PING = "bantin.websub_ping"
DRAIN_HITS = "bantin.drain_hits"
PERSIST_COUNTERS = "bantin.persist_counters"

# The queue of the renditions a first page view does without (AVIF, the other widths): about
# 40 times the CPU of a photo's first view (seconds per photo against a quarter of one), so a
# worker of their own runs them (`bantin worker --queues renditions`, one process, low CPU
# priority) and every other worker leaves them out (`--exclude-queues renditions`): a photo
# article sent after another never waits behind the first one's AVIF.
RENDITIONS = "renditions"
QUEUES = ("default", "images", RENDITIONS, "feeds", "counters")
ROUTES = {
    PROCESS_ARTICLE: "default",
    PUBLISH_ARTICLE: "default",
    PUBLISH_MANY: "default",
    SWEEP: "default",
    ARTICLE_CHANGED: "default",
    SITE_CHANGED: "default",
    REBUILD_FEEDS: "feeds",
    WEBSUB_PING: "feeds",
    RENDER_IMAGE: "images",
    RENDER_REST: RENDITIONS,
    DRAIN_HITS: "counters",
    PERSIST_COUNTERS: "counters",
}


def broker_conf(redis_url: str) -> dict[str, Any]:
    """What every Celery client of bantin shares, senders and workers alike."""
    from kombu import Queue

    return {
        "broker_url": redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": 3600,
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "timezone": "UTC",
        "enable_utc": True,
        "task_default_queue": "default",
        "task_queues": [Queue(name) for name in QUEUES],
        "task_routes": {name: {"queue": queue} for name, queue in ROUTES.items()},
    }


class TaskSender:
    """Sends tasks by name after the caller's commit. Celery's client is synchronous, so its
    socket work runs in a thread; a send that fails is logged and left to beat's sweep, which
    re-sends whatever a lost message leaves waiting."""

    def __init__(self, redis_url: str, *, timeout: float = 2.0) -> None:
        from celery import Celery

        self._timeout = timeout
        conf = broker_conf(redis_url)
        # The client's own waits bounded by the timeout, one retry each (which a connection
        # the broker's restart broke needs). With its defaults, a batch of 20 articles to
        # schedule was answered after 13 s while the broker refused connections, and after
        # 105 s while it was silent (paused, a dropped network): now a send gives up after at
        # most two tries of `timeout`, and a batch's first failed send ends its sending.
        conf["broker_transport_options"] = {
            **conf["broker_transport_options"],
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "max_retries": 1,
        }
        conf["task_publish_retry_policy"] = {"max_retries": 1, "interval_start": 0}
        self._celery: Celery = Celery("bantin-sender")
        self._celery.conf.update(conf)

    async def send(self, name: str, *args: Any) -> bool:
        if name not in ROUTES:
            raise ValueError(f"unknown task {name!r}")
        current = request_id.get()
        # The request's id travels with the task, so its log lines can be followed.
        headers = {"request_id": current} if current else None
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def send() -> None:
            loop.call_soon_threadsafe(started.set)
            self._celery.send_task(name, args=list(args), headers=headers)

        # The timeout counts from the thread's start: in a burst a send may first queue for a
        # thread, which is no sign of the broker being away.
        sending = asyncio.ensure_future(asyncio.to_thread(send))
        sending.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            await started.wait()
            await asyncio.wait_for(asyncio.shield(sending), self._timeout)
        except Exception:
            log.warning(
                "could not send 1 %s (from %s; the sweep will retry)",
                name,
                list(args),
                exc_info=True,
            )
            return False
        return True

    async def send_many(self, name: str, calls: Iterable[Sequence[Any]]) -> int:
        """One task per item of `calls`, all sent from one trip to a worker thread over one
        broker connection (a batch of articles, an import: a thread hop per message cost as
        much as the message); returns how many were sent. Those not sent are logged and left
        to the sweep, as with `send`."""
        if name not in ROUTES:
            raise ValueError(f"unknown task {name!r}")
        todo = [list(args) for args in calls]
        current = request_id.get()
        headers = {"request_id": current} if current else None

        def send_all() -> int:
            sent = 0
            try:
                with self._celery.producer_or_acquire() as producer:
                    for args in todo:
                        self._celery.send_task(name, args=args, headers=headers, producer=producer)
                        sent += 1
            except Exception as error:
                # A message that failed after the client's retry means the broker is away: the
                # rest are not tried, each would wait as long.
                log.warning(
                    "could not send %d %s (from %s; the sweep will retry): %s",
                    len(todo) - sent,
                    name,
                    todo[min(sent, len(todo) - 1)],
                    error,
                )
            return sent

        return await asyncio.to_thread(send_all) if todo else 0

    def close(self) -> None:
        self._celery.close()
