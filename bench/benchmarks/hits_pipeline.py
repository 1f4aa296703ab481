"""Issue 7: page views per second counted through the whole pipeline (the publisher's recorder,
its batches to the Redis stream, the counters worker's drain), as a ratio to raw Redis XADD and
to a design that sends one Celery task per view (goal: at least 50,000 views/s on two cores,
at least 50 times the one-task-per-view design)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis import Redis

from bench import celery_per_hit
from bench.hits_drain import NO_DATABASE  # the total exists first: nothing is ever restored
from bench.registry import Context, Results, benchmark
from bench.stats import ratio
from bench.support import BROWSER, banner, fmt_ratio, reader_cookie, say, stop
from shared import keys
from shared.settings import Settings

VISITORS = 1000  # distinct readers (cookies) the synthetic views come from
ARTICLES = 50
XADD_BATCH = 500  # entries per pipeline
SCRATCH_STREAM = "bench:scratch-hits"


@benchmark(
    "hits_pipeline",
    description="page views/s counted through recorder -> stream -> drain, vs raw XADD and"
    " vs one Celery task per view",
)
def hits_pipeline(ctx: Context) -> Results:
    views = ctx.pick(200_000, 20_000)
    tasks = ctx.pick(5_000, 1_000)
    rounds = ctx.pick(3, 1)
    runs: dict[str, list[dict[str, Any]]] = {"pipeline": [], "xadd": [], "per_task": []}
    drain_only: list[dict[str, Any]] = []
    with _embedded_redis() as redis_url, _per_task_worker(redis_url) as worker:
        for n in range(rounds):
            runs["xadd"].append(_raw_xadd(redis_url, views))
            runs["pipeline"].append(_pipeline(redis_url, views))
            drain_only.append(_drain_only(redis_url, views))
            runs["per_task"].append(_per_task(redis_url, tasks))
            say(
                f"  round {n + 1}/{rounds}: pipeline {runs['pipeline'][-1]['hits_per_s']:,.0f}"
                f"/s, xadd {runs['xadd'][-1]['hits_per_s']:,.0f}/s,"
                f" drain alone {drain_only[-1]['hits_per_s']:,.0f}/s,"
                f" one task per view {runs['per_task'][-1]['hits_per_s']:,.0f}/s"
            )
        worker_info = worker

    def median(rows: list[dict[str, Any]], key: str = "hits_per_s") -> float:
        return float(statistics.median(r[key] for r in rows))

    pipeline, xadd, per_task = (median(runs[k]) for k in ("pipeline", "xadd", "per_task"))
    ratios = {
        "pipeline_vs_raw_xadd": ratio(pipeline, xadd),
        "pipeline_vs_one_task_per_view": ratio(pipeline, per_task),
        "record_phase_vs_raw_xadd": ratio(median(runs["pipeline"], "record_per_s"), xadd),
        "drain_alone_vs_raw_xadd": ratio(median(drain_only), xadd),
        "record_alone_vs_raw_xadd": ratio(median(drain_only, "record_alone_per_s"), xadd),
    }
    exact = all(r["counted"] == views for r in runs["pipeline"] + drain_only)
    goals = {
        "at_least_50000_per_s": pipeline >= 50_000,
        "at_least_50x_one_task_per_view": (ratios["pipeline_vs_one_task_per_view"] or 0) >= 50,
        "every_view_counted_exactly_once": exact,
    }
    banner(
        "hits_pipeline",
        [
            (
                "pipeline : one task per view",
                f"{fmt_ratio(ratios['pipeline_vs_one_task_per_view'])}   ({pipeline:,.0f} vs"
                f" {per_task:,.0f} views/s; goal >= 50x:"
                f" {'met' if goals['at_least_50x_one_task_per_view'] else 'MISSED'})",
            ),
            (
                "pipeline : raw XADD",
                f"{fmt_ratio(ratios['pipeline_vs_raw_xadd'])}   ({pipeline:,.0f} vs {xadd:,.0f}"
                " entries/s)",
            ),
            (
                "pipeline, absolute",
                f"{pipeline:,.0f} views/s counted (goal >= 50,000:"
                f" {'met' if goals['at_least_50000_per_s'] else 'MISSED'});"
                f" every view counted once: {exact}",
            ),
        ],
    )
    return {
        "params": {
            "views": views,
            "per_task_views": tasks,
            "rounds": rounds,
            "visitors": VISITORS,
            "per_task_worker": worker_info,
            "drain": "back to back in a second process (beat sends one a second in production)",
        },
        "ratios": ratios,
        "goals": goals,
        "pipeline_views_per_sec": median(runs["pipeline"]),
        "pipeline": {
            "rounds_per_sec": [r["hits_per_s"] for r in runs["pipeline"]],
            "record_phase_per_sec": median(runs["pipeline"], "record_per_s"),
            "end_to_end_s": median(runs["pipeline"], "elapsed_s"),
            "drain_batches": runs["pipeline"][-1]["tally"].get("batches"),
        },
        "drain_alone_per_sec": median(drain_only),
        "record_alone_per_sec": median(drain_only, "record_alone_per_s"),
        "raw_xadd_entries_per_sec": xadd,
        "one_task_per_view_per_sec": per_task,
        "one_task_per_view": {
            "rounds_per_sec": [r["hits_per_s"] for r in runs["per_task"]],
            "send_phase_per_sec": median(runs["per_task"], "send_per_s"),
        },
        # In the JSON file only (the table shows one level of nesting).
        "detail": {"rounds": {**runs, "drain_only": drain_only}},
    }


# --- servers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _embedded_redis() -> Iterator[str]:
    """bantin's embedded Redis (the same binary and settings as `bantin up`), in a temporary
    home; yields its URL."""
    from bantin.embedded import EmbeddedRedis

    scratch = Path(tempfile.mkdtemp(prefix="bantin-bench-redis-"))
    server = EmbeddedRedis(scratch)
    try:
        proc = server.start()
        try:
            yield server.url
        finally:
            stop(proc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _per_task_worker(redis_url: str) -> Iterator[dict[str, Any]]:
    """`celery worker` (prefork, concurrency 2) for bench/celery_per_hit.py, warmed up."""
    scratch = Path(tempfile.mkdtemp(prefix="bantin-bench-celery-"))
    log = scratch / "worker.log"
    argv = [sys.executable, "-m", "celery", "-A", "bench.celery_per_hit", "worker"]
    argv += ["--pool", "prefork", "--concurrency", "2", "-Q", celery_per_hit.QUEUE]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
    env = {**os.environ, "BENCH_PER_HIT_BROKER": redis_url}
    celery_per_hit.app.conf.broker_url = redis_url
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )
    try:
        with Redis.from_url(redis_url) as r:
            r.delete(celery_per_hit.COUNTER)
            celery_per_hit.app.send_task(celery_per_hit.TASK, args=["v", "/", "", "0", "0"])
            deadline = time.monotonic() + 60
            while int(r.get(celery_per_hit.COUNTER) or 0) < 1:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the per-task Celery worker did not start:\n"
                        + log.read_text(errors="replace")[-3000:]
                    )
                time.sleep(0.05)
        yield {"pool": "prefork", "concurrency": 2, "prefetch_multiplier": 4}
    finally:
        stop(proc, timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


# --- the measurements ---------------------------------------------------------------------------


def _hit(i: int, now: int) -> tuple[str, str, str, str, str]:
    """A view's (visitor, path, article, unix seconds, bot)."""
    article = i % ARTICLES + 1
    return (
        f"c{i % VISITORS:015d}",
        f"/tin-hoat-dong/bai-viet-{article}/{i}",  # as _requests(): a page of its own
        str(article),
        str(now),
        "0",
    )


def _raw_xadd(redis_url: str, count: int) -> dict[str, Any]:
    """The plain use of a stream: one entry a view (the view's line, packed as in
    Recorder.flush, done before the clock starts), XADDed in pipelines of XADD_BATCH."""
    now = int(time.time())
    hits = (_hit(i, now) for i in range(count))
    entries = [
        f"{seen} {bot} {article} {visitor} {path}" for visitor, path, article, seen, bot in hits
    ]
    field = "h"
    with Redis.from_url(redis_url) as r:
        r.delete(SCRATCH_STREAM)
        t0 = time.monotonic()
        for start in range(0, count, XADD_BATCH):
            pipe = r.pipeline(transaction=False)
            for packed in entries[start : start + XADD_BATCH]:
                pipe.xadd(SCRATCH_STREAM, {field: packed}, maxlen=1_000_000, approximate=True)
            pipe.execute()
        elapsed = time.monotonic() - t0
        assert r.xlen(SCRATCH_STREAM) == count
        r.delete(SCRATCH_STREAM)
    return {"hits": count, "elapsed_s": elapsed, "hits_per_s": count / elapsed}


def _reset_counters(r: Redis) -> None:
    """A clean slate: no stream, no group, no counters, and a total of 0 (so the drain never
    looks for PostgreSQL to restore from)."""
    stale = [*r.scan_iter(match=keys.PREFIX + "*", count=1000)]
    for start in range(0, len(stale), 1000):
        r.delete(*stale[start : start + 1000])
    r.set(keys.TOTAL, 0)


def _settings() -> Settings:
    return Settings.from_env({"BANTIN_ADMIN_TOKEN": "bench-" + "x" * 34})


class _Request:
    """What Recorder.page_view reads of a request, for a GET of an article page by a
    returning reader (a browser, its cookie; the headers are a real request's). Light enough
    to make one per view, each for a page of its own: the recorder holds identical views of
    one second as one line, and views that were all alike would measure only that."""

    __slots__ = ("headers", "method", "path", "secure")

    def __init__(self, headers: Any, path: str) -> None:
        self.method, self.headers, self.path, self.secure = "GET", headers, path, False


def _requests(count: int) -> list[Any]:
    """`count` views' requests, every one different (its own page), from VISITORS readers.
    Built before the timed part."""
    from aiohttp.test_utils import make_mocked_request

    headers = [
        make_mocked_request(
            "GET", "/", headers={"User-Agent": BROWSER, "Cookie": reader_cookie(i)}
        ).headers
        for i in range(VISITORS)
    ]
    return [
        _Request(headers[i % VISITORS], f"/tin-hoat-dong/bai-viet-{i % ARTICLES + 1}/{i}")
        for i in range(count)
    ]


async def _record(redis_url: str, count: int, requests: list[Any]) -> tuple[float, float]:
    """`count` views through Recorder.page_view, with its flusher task running as in the
    publisher; returns (time.monotonic() of the first view, of the last batch in the stream)."""
    from aiohttp import web
    from redis.asyncio import Redis as AsyncRedis

    from shared.counting.record import Recorder

    response = web.Response()
    redis = AsyncRedis.from_url(redis_url, socket_timeout=10)
    try:
        recorder = Recorder(redis, _settings())
        recorder.start()
        await asyncio.sleep(0)
        started_at = time.monotonic()
        for i in range(count):
            recorder.page_view(requests[i % len(requests)], response, i % ARTICLES + 1)
            if i % 100 == 99:
                await asyncio.sleep(0)  # a server yields between requests: the flusher runs
        # Every view in the stream (the flusher sends them as in the publisher), then stop it.
        while recorder.waiting:  # noqa: ASYNC110 (the recorder has no event to wait on)
            await asyncio.sleep(0.001)
        sent_at = time.monotonic()
        # Let the flusher go back to waiting for work before it is cancelled: on Python 3.11,
        # asyncio.wait_for swallows a cancellation that arrives as the wake-up event is set
        # (CPython gh-86296), and Recorder.close() then waits for ever for its task.
        await asyncio.sleep(0.05)
        await asyncio.wait_for(recorder.close(), 30)
        if recorder.waiting or recorder.dropped:
            raise RuntimeError(f"{recorder.waiting} views not sent, {recorder.dropped} dropped")
        return started_at, sent_at
    finally:
        await redis.aclose()


def _pipeline(redis_url: str, count: int) -> dict[str, Any]:
    requests = _requests(count)
    with Redis.from_url(redis_url) as r:
        _reset_counters(r)
    argv = [sys.executable, "-m", "bench.hits_drain", "--redis", redis_url, "--target", str(count)]
    drainer = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert drainer.stdout is not None
        readable, _, _ = select.select([drainer.stdout], [], [], 60)
        if not readable or not drainer.stdout.readline().startswith("ready"):
            raise RuntimeError(f"the drain process did not start (exit code {drainer.poll()})")
        t0, recorded_at = asyncio.run(_record(redis_url, count, requests))
        readable, _, _ = select.select([drainer.stdout], [], [], 300)
        line = drainer.stdout.readline() if readable else ""
        drainer.wait(30)
    finally:
        stop(drainer)
        if drainer.stdout is not None:
            drainer.stdout.close()
    if not line:
        raise RuntimeError("the drain process said nothing in 300 s")
    report = json.loads(line)
    done_at, tally, calls = report["done_at"], report["tally"], report["calls"]
    if done_at is None:
        raise RuntimeError(f"the drain did not count {count} views in time: {tally}")
    with Redis.from_url(redis_url) as r:
        counted = int(r.get(keys.TOTAL) or 0)
        left = r.xlen(keys.HITS_STREAM)
    elapsed = done_at - t0
    return {
        "hits": count,
        "counted": counted,
        "stream_left": left,
        "elapsed_s": elapsed,
        "hits_per_s": count / elapsed,
        "record_s": recorded_at - t0,
        "record_per_s": count / (recorded_at - t0),
        "drain_calls": calls,
        "tally": tally,
    }


def _drain_only(redis_url: str, count: int) -> dict[str, Any]:
    """Fill the stream first (no drain running), then time the drain alone, in this process."""
    from shared.counting.count import drain

    with Redis.from_url(redis_url, socket_timeout=10) as r:
        _reset_counters(r)
        t_record, recorded_at = asyncio.run(_record(redis_url, count, _requests(count)))
        record_s = recorded_at - t_record
        zone = _settings().zone
        tally: Counter[str] = Counter()
        t0 = time.monotonic()
        deadline = t0 + 300
        while int(r.get(keys.TOTAL) or 0) < count and time.monotonic() < deadline:
            tally.update(drain(r, zone, NO_DATABASE, budget=0.8))
        elapsed = time.monotonic() - t0
        counted = int(r.get(keys.TOTAL) or 0)
    return {
        "hits": count,
        "counted": counted,
        "elapsed_s": elapsed,
        "hits_per_s": counted / elapsed,
        # The recorder alone (nothing drains meanwhile): its own ceiling.
        "record_alone_s": record_s,
        "record_alone_per_s": count / record_s,
        "tally": dict(tally),
    }


def _per_task(redis_url: str, count: int) -> dict[str, Any]:
    """One `send_task` per view (what a publisher would do), one INCR per task in the
    worker; from the first send to the counter reaching `count`."""
    app = celery_per_hit.app
    now = int(time.time())
    hits = [_hit(i, now) for i in range(count)]
    with Redis.from_url(redis_url, socket_timeout=10) as r:
        r.set(celery_per_hit.COUNTER, 0)
        t0 = time.monotonic()
        for hit in hits:
            app.send_task(celery_per_hit.TASK, args=list(hit))
        sent_at = time.monotonic()
        deadline = sent_at + 300
        while int(r.get(celery_per_hit.COUNTER) or 0) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the per-task worker did not count every view in 300 s")
            time.sleep(0.002)
        done_at = time.monotonic()
        counted = int(r.get(celery_per_hit.COUNTER) or 0)
    return {
        "hits": count,
        "counted": counted,
        "elapsed_s": done_at - t0,
        "hits_per_s": count / (done_at - t0),
        "send_s": sent_at - t0,
        "send_per_s": count / (sent_at - t0),
    }
