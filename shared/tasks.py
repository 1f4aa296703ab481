"""Task names, their queues, and how a service sends one.

The names are the contract between senders (ingest, beat, the importer) and workers. A service
sends by name through `TaskSender`, a Celery client that knows no task code: services never
import workers/. workers/app.py takes its routes from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shared.logs import request_id

if TYPE_CHECKING:
    from celery import Celery

# Celery and kombu are imported where they are used, not here: the publisher reads QUEUES (its
# /metrics) and sends no task, and need not carry Celery for that.

log = logging.getLogger(__name__)

SEND_THREADS = 4  # a TaskSender's threads (see TaskSender)

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

        self._timeout = timeout  # the client's own retries take far longer than a request may
        self._celery: Celery = Celery("bantin-sender")
        self._celery.conf.update(broker_conf(redis_url))
        # Threads of its own: sends stuck on a broker that does not answer (each for the
        # client's retries) must not hold the threads that requests' other work runs in.
        self._threads = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="bantin-send")

    async def send(self, name: str, *args: Any) -> bool:
        """One task; whether it was sent (see `send_many`)."""
        return await self.send_many(name, [args]) == 1

    async def send_many(self, name: str, calls: Iterable[Sequence[Any]]) -> int:
        """One task per item of `calls`, all sent from one trip to a worker thread over one
        broker connection (a batch of articles, an import: a thread hop per message cost as
        much as the message); returns how many were sent.

        The caller waits for the first message at most the timeout, counted from the thread's
        start (in a burst a send may first queue for a thread, which is no sign of the broker
        being away), then for the rest, which go at the broker's pace. A message that fails
        after the client's own retries means the broker is away: the rest are not tried (each
        would wait as long). What is not sent is logged and left to the sweep."""
        if name not in ROUTES:
            raise ValueError(f"unknown task {name!r}")
        todo = [list(args) for args in calls]
        if not todo:
            return 0
        current = request_id.get()
        # The request's id travels with the task, so its log lines can be followed.
        headers = {"request_id": current} if current else None
        loop = asyncio.get_running_loop()
        started, answered = asyncio.Event(), asyncio.Event()

        def send_all() -> int:
            loop.call_soon_threadsafe(started.set)
            sent = 0
            try:
                with self._celery.producer_or_acquire() as producer:
                    for args in todo:
                        self._celery.send_task(name, args=args, headers=headers, producer=producer)
                        sent += 1
                        if sent == 1:
                            loop.call_soon_threadsafe(answered.set)
            except Exception as err:
                log.warning(
                    "could not send %d %s (from %s; the sweep will retry): %s",
                    len(todo) - sent,
                    name,
                    todo[min(sent, len(todo) - 1)],
                    err,
                )
            finally:
                loop.call_soon_threadsafe(answered.set)
            return sent

        sending = asyncio.ensure_future(loop.run_in_executor(self._threads, send_all))
        sending.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            # A burst may queue for a thread a while (no sign of the broker being away); all
            # of them busy for this long is one.
            await asyncio.wait_for(started.wait(), SEND_THREADS * self._timeout)
            await asyncio.wait_for(answered.wait(), self._timeout)
        except TimeoutError:
            log.warning(
                "could not send %d %s (from %s) in %s s; the sweep will retry",
                len(todo),
                name,
                todo[0],
                self._timeout,
            )
            return 0
        return await asyncio.shield(sending)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._celery.close()
