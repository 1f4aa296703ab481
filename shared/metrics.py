"""Prometheus metrics for the services, and request ids for their logs.

Each app has its own registry (no global state: tests build several apps in one process).
Request counts and latencies are per process; queue lengths, the page-view stream's lag and the
workers' task statistics are read from Redis when /metrics is scraped, so they describe the
whole site whichever replica answers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from shared import keys
from shared.logs import new_request_id, request_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
QUEUES = ("default", "images", "feeds", "counters")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "bantin_http_requests",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bantin_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge(
            "bantin_queue_length",
            "Tasks waiting in a Celery queue",
            ["queue"],
            registry=self.registry,
        )
        self.stream_lag = Gauge(
            "bantin_hits_stream_lag",
            "Page views recorded but not counted yet",
            registry=self.registry,
        )
        self.tasks = Gauge(
            "bantin_tasks",
            "Tasks run by every worker since the counters began",
            ["task", "outcome"],
            registry=self.registry,
        )
        self.task_seconds = Gauge(
            "bantin_task_seconds",
            "Total time spent in each task, by every worker",
            ["task"],
            registry=self.registry,
        )
        self.extra: list[Callable[[], None]] = []
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        """A value this process knows (cache hits, buffered views), read at scrape time."""
        gauge = Gauge(name, doc, registry=self.registry)
        self.extra.append(lambda: gauge.set(read()))

    def middleware(self) -> Any:
        @web.middleware
        async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
            rid = request.headers.get("X-Request-ID", "")[:64] or new_request_id()
            token = request_id.set(rid)
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                response.headers["X-Request-ID"] = rid
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                route = _route(request)
                # Label children are memoised: .labels() takes a lock and builds its key on
                # every call, which showed in profiles of the hot routes.
                key = (route, request.method, status)
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = (
                        self.requests.labels(route, request.method, str(status)),
                        self.latency.labels(route),
                    )
                child[0].inc()
                child[1].observe(time.perf_counter() - started)
                request_id.reset(token)

        return measure

    async def render(self, redis: Any) -> bytes:
        pipe = redis.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(queue)
        pipe.xlen(keys.HITS_STREAM)
        pipe.hgetall(keys.TASK_STATS)
        *lengths, lag, stats = await pipe.execute()
        for queue, length in zip(QUEUES, lengths, strict=True):
            self.queue.labels(queue).set(length)
        self.stream_lag.set(lag)
        for field, value in stats.items():
            task, _, what = field.decode().rpartition(":")
            if what == "seconds":
                self.task_seconds.labels(task).set(float(value))
            elif what in ("succeeded", "failed", "retried"):
                self.tasks.labels(task, what).set(float(value))
        for update in self.extra:
            update()
        return generate_latest(self.registry)


def _route(request: web.Request) -> str:
    """The route's pattern (/{category}/{tail}), never the raw path: bounded label values."""
    info = request.match_info.route.resource if request.match_info.route else None
    return info.canonical if info is not None else "unmatched"


def handler(metrics: ServiceMetrics, redis_key: web.AppKey[Any]) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        body = await metrics.render(request.app[redis_key])
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return serve
