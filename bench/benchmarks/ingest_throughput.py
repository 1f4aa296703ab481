"""Issue 3: accepted text articles per second, and p99 latency, at 50 concurrent clients, as a
ratio to a bare aiohttp handler that parses the same JSON in the same run; and the peak RSS of
the ingest process while a 25 MB photo uploads (goal: under 10 MB above idle)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bantin.bootstrap import demo_seed, text_only
from bench import loadgen
from bench.load import with_bare_server
from bench.registry import Context, Results, benchmark
from bench.stack import Stack, ensure_category, post_article, with_stack
from bench.stats import ratio
from bench.support import (
    BROWSER,
    Settled,
    backends,
    banner,
    fmt_ratio,
    role_process,
    say,
    settle,
)

CONNECTIONS = 50
CATEGORY = {"slug": "tin-hoat-dong", "name": "Tin hoạt động"}
TITLE_MARK = "@@BENCH-TITLE@@"
PHOTO_BYTES = 26_000_000  # a "25 MB" photo, just under BANTIN_MAX_PHOTO_BYTES (26,214,400)
RSS_GOAL = 10 * 1024 * 1024
SAMPLE_EVERY = 0.010  # s between two RSS samples
MIB = 1024 * 1024


@benchmark(
    "ingest_throughput",
    description="POST text articles at 50 clients vs a bare aiohttp JSON handler;"
    " ingest RSS during a 25 MB photo upload",
)
def ingest_throughput(ctx: Context) -> Results:
    rounds = ctx.pick(5, 1)
    duration = ctx.pick(4.0, 2.0)
    uploads = ctx.pick(3, 1)
    settle_timeout = ctx.pick(90.0, 15.0)
    # Every accepted article is published by a worker, which competes for the two cores: the
    # workers are given time to catch up after each measurement (and the baseline's rounds
    # are measured with them idle, as the ingest's start).
    env = {"BANTIN_RATE_LIMIT_PER_MINUTE": str(10**9)}
    with with_stack(env=env) as stack:
        database_url, redis_url = backends(stack)
        settled = Settled()
        asyncio.run(_prepare(stack))
        seed = text_only(demo_seed()["article"])
        run = secrets.token_hex(3)
        template = {**seed, "title": f"{seed['title']} (bench {run} {TITLE_MARK})"}
        raw = json.dumps(template, ensure_ascii=False).encode()
        prefix, suffix = raw.split(TITLE_MARK.encode())
        headers = {"Content-Type": "application/json", "User-Agent": BROWSER}
        ingest = loadgen.Target(
            "ingest",
            stack.api("/api/v1/articles"),
            method="POST",
            headers={**headers, **stack.admin_headers},
            body_parts=(prefix, suffix),
            ok_statuses=(202,),
        )
        with with_bare_server() as bare_url:
            bare = loadgen.Target(
                "bare_json",
                bare_url + "/json",
                method="POST",
                headers={**headers, **stack.admin_headers},
                body_parts=(prefix, suffix),
                ok_statuses=(202,),
            )
            say(f"  load: {CONNECTIONS} clients, {rounds} x {duration:.0f} s each, alternating")
            runs = loadgen.alternate(
                [ingest, bare],
                rounds=rounds,
                connections=CONNECTIONS,
                duration=duration,
                warmup=1.0,
                between=lambda _: settle(redis_url, timeout=settle_timeout, record=settled),
            )
        settle(redis_url, timeout=settle_timeout, record=settled)
        rss = _photo_rss(stack, uploads)
        articles = _count_articles(database_url)

    ing, base = loadgen.summary(runs["ingest"]), loadgen.summary(runs["bare_json"])
    ratios = {
        "ingest_vs_bare_rps": ratio(ing["median_rps"], base["median_rps"]),
        "ingest_vs_bare_p99_latency": ratio(ing["p99_ms"], base["p99_ms"]),
        "ingest_vs_bare_rps_paired_median": loadgen.paired_median(runs, "ingest", "bare_json"),
    }
    goals = {"photo_rss_delta_under_10_mib": rss["delta_bytes"] < RSS_GOAL}
    banner(
        "ingest_throughput",
        [
            (
                "accepted/s ingest : bare",
                f"{fmt_ratio(ratios['ingest_vs_bare_rps'])}"
                f"   ({ing['median_rps']:,.0f} vs {base['median_rps']:,.0f} req/s)",
            ),
            (
                "p99 ingest : bare",
                f"{fmt_ratio(ratios['ingest_vs_bare_p99_latency'])}"
                f"   ({ing['p99_ms']:.1f} vs {base['p99_ms']:.1f} ms)",
            ),
            (
                "photo upload RSS",
                f"+{rss['delta_bytes'] / MIB:.1f} MiB above idle"
                f" (idle {rss['idle_bytes'] / MIB:.1f} MiB, peak {rss['peak_bytes'] / MIB:.1f} MiB;"
                f" goal < 10 MiB: {'met' if goals['photo_rss_delta_under_10_mib'] else 'MISSED'})",
            ),
        ],
    )
    return {
        "params": {
            **loadgen.generator_info(),
            "connections": CONNECTIONS,
            "rounds": rounds,
            "duration_s": duration,
            "article_json_bytes": len(prefix) + len(suffix) + 8,
            "photo_uploads": uploads,
        },
        "ratios": ratios,
        "goals": goals,
        "ingest": _shown(ing),
        "bare_json": _shown(base),
        "photo_rss": {k: v for k, v in rss.items() if not isinstance(v, list)},
        "background": {
            "settle_waits": settled.waits,
            "settle_total_s": settled.seconds,
            "settle_timeouts": settled.timeouts,
        },
        "articles_by_status": articles,
        # In the JSON file only (the table shows one level of nesting).
        "detail": {
            "statuses": {"ingest": ing["statuses"], "bare_json": base["statuses"]},
            "rounds": {name: [r.as_dict() for r in rs] for name, rs in runs.items()},
            "rss_uploads": {"uploads": rss["uploads"]},
        },
    }


def _shown(s: dict[str, Any]) -> dict[str, Any]:
    return {k: s[k] for k in ("median_rps", "p50_ms", "p99_ms", "rounds_rps", "requests", "errors")}


async def _prepare(stack: Stack) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await ensure_category(session, stack, **CATEGORY)
        await post_article(session, stack, text_only(demo_seed()["article"]))


def _count_articles(database_url: str) -> dict[str, int]:
    """Articles by status at the end: the workers publish what ingest accepted."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT status, count(*) FROM articles GROUP BY status").fetchall()
    return {str(status): int(n) for status, n in rows}


# --- POST /api/v1/articles/batch against one POST per article ----------------------------------

BATCH = 500
BATCH_GOAL = 10.0


@benchmark(
    "ingest_batch",
    description="text articles/s through POST /api/v1/articles/batch (500 a request) vs one"
    " POST per article at 50 clients",
)
def ingest_batch(ctx: Context) -> Results:
    rounds = ctx.pick(3, 1)
    articles = ctx.pick(2000, 500)  # per round and way
    settle_timeout = ctx.pick(120.0, 30.0)
    env = {"BANTIN_RATE_LIMIT_PER_MINUTE": str(10**9)}
    with with_stack(env=env) as stack:
        _, redis_url = backends(stack)
        settled = Settled()
        asyncio.run(_prepare(stack))
        say(f"  {rounds} rounds of {articles} articles each way, the workers settled between")
        single: list[float] = []
        batch: list[float] = []
        for n in range(rounds):
            for way, rates in (("single", single), ("batch", batch)):
                settle(redis_url, timeout=settle_timeout, record=settled)
                rates.append(asyncio.run(_submit(stack, way, articles, f"{n}-{way}")))
                say(f"  round {n + 1} {way}: {rates[-1]:,.0f} articles/s")
    speedup = ratio(statistics.median(batch), statistics.median(single))
    goals = {"batch_10x_single": bool(speedup and speedup >= BATCH_GOAL)}
    banner(
        "ingest_batch",
        [
            (
                "articles/s batch : single",
                f"{fmt_ratio(speedup)}   ({statistics.median(batch):,.0f} vs"
                f" {statistics.median(single):,.0f}; goal >= {BATCH_GOAL:.0f}x:"
                f" {'met' if goals['batch_10x_single'] else 'MISSED'})",
            )
        ],
    )
    return {
        "params": {"rounds": rounds, "articles": articles, "batch": BATCH, "clients": CONNECTIONS},
        "ratios": {"batch_vs_single_articles_per_s": speedup},
        "goals": goals,
        "single_articles_per_s": single,
        "batch_articles_per_s": batch,
        "background": {"settle_waits": settled.waits, "settle_total_s": settled.seconds},
    }


async def _submit(stack: Stack, way: str, count: int, label: str) -> float:
    """Submit `count` text articles one way; returns accepted articles per second."""
    seed = text_only(demo_seed()["article"])
    items = [{**seed, "title": f"{seed['title']} ({label} {n})"} for n in range(count)]
    timeout = aiohttp.ClientTimeout(total=300)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def post(path: str, body: Any) -> Any:
            async with session.post(
                stack.api(path), json=body, headers=stack.admin_headers
            ) as response:
                if response.status not in (200, 202):
                    raise RuntimeError(f"{path} answered {response.status}")
                return await response.json()

        t0 = time.perf_counter()
        if way == "single":
            queue = iter(items)

            async def client() -> int:
                return sum([1 for item in queue if await post("/api/v1/articles", item)])

            accepted = sum(await asyncio.gather(*(client() for _ in range(CONNECTIONS))))
        else:
            answers = await asyncio.gather(
                *(
                    post("/api/v1/articles/batch", {"articles": items[i : i + BATCH]})
                    for i in range(0, count, BATCH)
                )
            )
            accepted = sum(answer["accepted"] for answer in answers)
        elapsed = time.perf_counter() - t0
    if accepted != count:
        raise RuntimeError(f"{way}: {accepted} of {count} articles accepted")
    return count / elapsed


# --- peak RSS while a 25 MB photo uploads -------------------------------------------------------


def big_jpeg(target_bytes: int) -> tuple[bytes, tuple[int, int]]:
    """A valid JPEG of exactly `target_bytes`: random noise at quality 100 without chroma
    subsampling (about 4 bytes a pixel, a few megapixels: far below the 50 MP cap), sized in
    whole 8-pixel block rows to fall just short, then COM segments (a comment, at most a few
    hundred KB) right after SOI to make up the rest."""
    from PIL import Image

    width = 3000 if target_bytes > 5_000_000 else 304

    def encode(height: int) -> bytes:
        img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=100, subsampling=0)
        return out.getvalue()

    per_block_row = len(encode(64)) / 8
    height = 8 * int((target_bytes - 4 * per_block_row) / per_block_row)
    for _ in range(10):
        data = encode(height)
        short = target_bytes - len(data)
        if short < 4:
            height -= 8
        elif short > 4 * 65_000:
            height += 8
        else:
            break
    else:
        raise RuntimeError(f"could not size a JPEG to {target_bytes} bytes")
    segments = []
    while short:
        size = min(short, 65_000)
        if 0 < short - size < 4:  # leave room for one more whole segment
            size -= 4
        segments.append(b"\xff\xfe" + (size - 2).to_bytes(2, "big") + b"\0" * (size - 4))
        short -= size
    jpeg = data[:2] + b"".join(segments) + data[2:]
    assert len(jpeg) == target_bytes
    return jpeg, (width, height)


def _photo_rss(stack: Stack, uploads: int) -> dict[str, Any]:
    proc = role_process(stack, "ingest")
    with tempfile.TemporaryDirectory(prefix="bantin-bench-photo-") as scratch:
        photo = Path(scratch) / "big.jpg"
        jpeg, (width, height) = big_jpeg(PHOTO_BYTES)
        photo.write_bytes(jpeg)
        small = Path(scratch) / "small.jpg"
        small.write_bytes(big_jpeg(200_000)[0])
        del jpeg
        # Warm-up: the first photo brings in the thread pool, the imaging code and the media
        # store's folders; what is measured is the cost of one more upload, not of the first.
        status, _ = asyncio.run(_upload(stack, small, "warm-up"))
        if status != 202:
            raise RuntimeError(f"a small photo upload answered {status}")
        results = []
        for n in range(uploads):
            time.sleep(0.5)
            results.append(_measure_upload(stack, proc, photo, f"rss {n + 1}"))
    worst = max(results, key=lambda r: r["delta_bytes"])
    return {
        "photo_bytes": PHOTO_BYTES,
        "photo_pixels": width * height,
        "status": worst["status"],
        "idle_bytes": worst["idle_bytes"],
        "peak_bytes": worst["peak_bytes"],
        "delta_bytes": worst["delta_bytes"],
        "delta_mib": worst["delta_bytes"] / MIB,
        "deltas_mib": [r["delta_bytes"] / MIB for r in results],
        "upload_median_s": statistics.median(r["upload_s"] for r in results),
        "samples_per_upload": min(r["samples"] for r in results),
        "sample_interval_ms": SAMPLE_EVERY * 1000,
        "uploads": results,
    }


def _measure_upload(stack: Stack, proc: psutil.Process, photo: Path, label: str) -> dict[str, Any]:
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                samples.append((time.perf_counter(), proc.memory_info().rss))
            except psutil.Error:
                return
            time.sleep(SAMPLE_EVERY)

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        time.sleep(1.0)  # idle
        t0 = time.perf_counter()
        status, elapsed = asyncio.run(_upload(stack, photo, label))
        t1 = time.perf_counter()
        time.sleep(0.3)  # what the request leaves behind (enqueue, freeing) counts too
    finally:
        stop.set()
        sampler.join(timeout=5)
    idle = [rss for t, rss in samples if t < t0]
    during = [rss for t, rss in samples if t >= t0]
    if not idle or not during:
        raise RuntimeError("no RSS samples of the ingest process")
    idle_rss = int(statistics.median(idle))
    peak = max(during)
    return {
        "status": status,
        "upload_s": elapsed,
        "idle_bytes": idle_rss,
        "peak_bytes": peak,
        "delta_bytes": peak - idle_rss,
        "samples": sum(1 for t, _ in samples if t0 <= t <= t1),
        "after_bytes": samples[-1][1],
    }


async def _upload(stack: Stack, photo: Path, label: str) -> tuple[int, float]:
    seed = text_only(demo_seed()["article"])
    article = {
        **seed,
        "title": f"{seed['title']} (ảnh {label} {secrets.token_hex(3)})",
        "images": [{"part": "anh-lon", "caption": "Ảnh 25 MB", "role": "gallery"}],
    }
    form = aiohttp.FormData()
    form.add_field(
        "article", json.dumps(article, ensure_ascii=False), content_type="application/json"
    )
    t0 = time.perf_counter()
    with photo.open("rb") as fh:
        form.add_field("anh-lon", fh, filename="anh-lon.jpg", content_type="image/jpeg")
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session,
            session.post(
                stack.api("/api/v1/articles"), data=form, headers=stack.admin_headers
            ) as response,
        ):
            body = await response.read()
            status = response.status
    if status != 202:
        raise RuntimeError(f"the photo upload answered {status}: {body[:500]!r}")
    return status, time.perf_counter() - t0
