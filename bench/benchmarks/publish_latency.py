"""How long a submitter waits between POSTing an article and readers seeing its page."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from bantin.bootstrap import demo_seed, text_only
from bench.net import require_loopback
from bench.registry import Context, Results, benchmark
from bench.stack import Stack, ensure_category, post_article, with_stack
from bench.stats import summarize

POLL_INTERVAL = 0.010  # s between the starts of two GETs of the page
GIVE_UP = 30.0  # s per article
CATEGORY = {"slug": "tin-hoat-dong", "name": "Tin hoạt động"}


@benchmark(
    "publish_latency",
    description="POST a text article (JSON) -> its page answers 200, one article at a time",
)
def publish_latency(ctx: Context) -> Results:
    count = ctx.pick(50, 5)
    budget = ctx.pick(600.0, 120.0)  # s for all articles: the benchmark always ends
    with with_stack() as stack:
        results = asyncio.run(_measure(stack, count, budget))
        results["stack_ready_s"] = stack.ready_s
    return results


@dataclass
class Poll:
    seen_at: float | None  # perf_counter() when the page first answered 200; None: gave up
    gets: int = 0
    other_statuses: Counter[str] = field(default_factory=Counter)  # neither 404 nor 200


async def _measure(stack: Stack, count: int, budget: float) -> Results:
    seed = text_only(demo_seed()["article"])
    run = secrets.token_hex(3)
    latencies: list[float] = []  # POST sent -> page 200, ms
    accepted: list[float] = []  # POST sent -> 202 read, ms
    gets: list[int] = []
    timeouts = 0
    others: Counter[str] = Counter()
    deadline = time.monotonic() + budget
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=4)
    ) as session:
        await ensure_category(session, stack, **CATEGORY)
        for i in range(count):
            if time.monotonic() > deadline:
                break
            article = {**seed, "title": f"{seed['title']} (bench {run} #{i + 1})"}
            t0 = time.perf_counter()
            answer = await post_article(session, stack, article)
            accepted.append((time.perf_counter() - t0) * 1000)
            poll = await poll_page(session, require_loopback(answer["links"]["page"]), t0 + GIVE_UP)
            gets.append(poll.gets)
            others.update(poll.other_statuses)
            if poll.seen_at is None:
                timeouts += 1
            else:
                latencies.append((poll.seen_at - t0) * 1000)
    stats = summarize(latencies, (95,))
    return {
        "params": {
            "articles": count,
            "poll_interval_ms": POLL_INTERVAL * 1000,
            "give_up_s": GIVE_UP,
        },
        "posted": len(accepted),
        "published": len(latencies),
        "timeouts": timeouts,
        "latency_ms": {k: stats[k] for k in ("median", "p95", "max", "min", "mean") if k in stats},
        "first_ms": latencies[0] if latencies else None,
        "accept_ms": {k: v for k, v in summarize(accepted, (95,)).items() if k != "n"},
        "gets_per_article": {k: v for k, v in summarize(gets, ()).items() if k != "n"},
        "other_statuses": dict(others),
        "samples_ms": latencies,
        "accept_samples_ms": accepted,
    }


async def poll_page(session: aiohttp.ClientSession, url: str, give_up_at: float) -> Poll:
    """GET `url` every POLL_INTERVAL until it answers 200, or until `give_up_at`."""
    poll = Poll(seen_at=None)
    while True:
        started = time.perf_counter()
        if started > give_up_at:
            return poll
        poll.gets += 1
        try:
            async with session.get(url, allow_redirects=False) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as err:
            status = type(err).__name__
        if status == "200":
            poll.seen_at = time.perf_counter()
            return poll
        if status != "404":
            poll.other_statuses[status] += 1
        await asyncio.sleep(max(0.0, POLL_INTERVAL - (time.perf_counter() - started)))
