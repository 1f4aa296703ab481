"""The design bantin does not use, as a baseline: one Celery task per page view.

    BENCH_PER_HIT_BROKER=redis://127.0.0.1:PORT/0 \
        python -m celery -A bench.celery_per_hit worker --concurrency 2 -Q bench-per-hit

Each view is one message on the broker, and the task counts it with one INCR. The hits_pipeline
benchmark sends the messages (`send_task` per view, as a publisher would) and times how long
until the counter reaches the number sent.
"""

from __future__ import annotations

import os

from celery import Celery
from redis import Redis

QUEUE = "bench-per-hit"
TASK = "bench.count_hit"
COUNTER = "bench:per-hit:count"

app = Celery("bench-per-hit")
app.conf.update(
    broker_url=os.environ.get("BENCH_PER_HIT_BROKER", "redis://127.0.0.1:6379/0"),
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    result_backend=None,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=4,
)

_clients: dict[int, Redis] = {}


def _redis() -> Redis:
    """One client per process (the prefork pool's children each open their own)."""
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = Redis.from_url(app.conf.broker_url, socket_timeout=5)
    return _clients[pid]


@app.task(name=TASK, ignore_result=True)
def count_hit(visitor: str, path: str, article: str, seen: str, bot: str) -> None:
    _redis().incr(COUNTER)
