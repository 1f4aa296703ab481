"""Prometheus metrics for the services (request ids for their logs are in shared/logs.py).

Each app has its own registry (no global state: tests build several apps in one process).
Request counts and latencies are per process; queue lengths, the page-view stream's lag and the
workers' task statistics are read from Redis when /metrics is scraped, so they describe the
whole site whichever replica answers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from shared import keys
from shared.tasks import QUEUES

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RequestStats:
    """Requests answered and their latencies, by route: plain integers, read at scrape time.

    prometheus_client's Counter and Histogram take a lock on every update; every request of a
    service updates these on the event loop's thread alone, so plain lists will do, and the
    collector turns them into the same metric families when /metrics is read.
    """

    def __init__(self) -> None:
        # Keyed by the route's resource (None: no route matched), named only at scrape time.
        self.counts: dict[tuple[Any, str, int], list[int]] = {}  # -> [count]
        self.buckets: dict[Any, list[float]] = {}  # -> per-bucket counts, then the sum

    def observe(self, route: Any, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        count = self.counts.get(key)
        if count is None:
            count = self.counts[key] = [0]
        count[0] += 1
        held = self.buckets.get(route)
        if held is None:
            held = self.buckets[route] = [0.0] * (len(BUCKETS) + 2)
        held[bisect_left(BUCKETS, seconds)] += 1
        held[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "bantin_http_requests", "HTTP requests answered", labels=["route", "method", "status"]
        )
        for (route, method, status), count in self.counts.items():
            requests.add_metric([_name(route), method, str(status)], count[0])
        yield requests
        latency = HistogramMetricFamily(
            "bantin_http_request_duration_seconds",
            "Time to answer an HTTP request",
            labels=["route"],
        )
        for route, held in self.buckets.items():
            cumulative, running = [], 0.0
            for bound, n in zip((*BUCKETS, float("inf")), held, strict=False):
                running += n
                cumulative.append((floatToGoString(bound), running))
            latency.add_metric([_name(route)], cumulative, held[-1])
        yield latency


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = RequestStats()
        self.registry.register(self.http)
        gauge = partial(Gauge, registry=self.registry)
        self.queue = gauge("bantin_queue_length", "Tasks waiting in a Celery queue", ["queue"])
        self.stream_lag = gauge("bantin_hits_stream_lag", "Page views recorded but not counted yet")
        self.tasks = gauge(
            "bantin_tasks",
            "Tasks run by every worker since the counters began",
            ["task", "outcome"],
        )
        self.task_seconds = gauge(
            "bantin_task_seconds", "Total time spent in each task, by every worker", ["task"]
        )
        self.extra: list[Callable[[], None]] = []

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        """A value this process knows (cache hits, buffered views), read at scrape time."""
        gauge = Gauge(name, doc, registry=self.registry)
        self.extra.append(lambda: gauge.set(read()))

    async def render(self, redis: Any) -> bytes:
        pipe = redis.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(queue)
        pipe.get(keys.HITS_WAITING)  # see shared/counting/stream.py
        pipe.hgetall(keys.TASK_STATS)
        *lengths, lag, stats = await pipe.execute()
        for queue, length in zip(QUEUES, lengths, strict=True):
            self.queue.labels(queue).set(length)
        self.stream_lag.set(max(0, int(lag or 0)))
        for field, value in stats.items():
            task, _, what = field.decode().rpartition(":")
            if what == "seconds":
                self.task_seconds.labels(task).set(float(value))
            elif what in ("succeeded", "failed", "retried"):
                self.tasks.labels(task, what).set(float(value))
        for update in self.extra:
            update()
        return generate_latest(self.registry)


def route_of(request: web.Request) -> Any:
    """What RequestStats keys a request by: its route's resource (None when none matched)."""
    return request.match_info.route.resource


def _name(resource: Any) -> str:
    """The route's pattern (/{category}/{tail}), never the raw path: bounded label values.
    Routes given as plain strings (the tests') are their own names."""
    if isinstance(resource, str):
        return resource
    return resource.canonical if resource is not None else "unmatched"


def handler(metrics: ServiceMetrics, redis_key: web.AppKey[Any]) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        body = await metrics.render(request.app[redis_key])
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return serve
