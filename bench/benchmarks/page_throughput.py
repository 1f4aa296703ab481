"""Issues 6 and 7: cached article page throughput, page-view counting on, as a ratio to a bare
aiohttp handler returning the same bytes in the same run (goal: at least 0.9), p99 latency at
50 connections, the ratio to nginx serving the same bytes; the same publisher with counting
off (goal: on / off at least 0.95); cold render time of an article page with 10^5 articles in
the database (goal: under 10 ms).

The goals' load is one returning reader's browser on 50 connections. The same three (counting
on, bare, counting off) are then measured again with every request another reader's, among
MANY_READERS in turn: counting at its dearest, reported beside the goals."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psutil
import psycopg

from bantin.bootstrap import demo_seed, text_only
from bench import bulk, loadgen
from bench.load import LoadResult, with_bare_server
from bench.nginx import nginx_version, with_nginx
from bench.registry import Context, Results, benchmark
from bench.stack import Stack, ensure_category, post_article, with_stack
from bench.stats import ratio, summarize
from bench.support import (
    Settled,
    backends,
    banner,
    bantin_role,
    fmt_ratio,
    reader_headers,
    say,
    settle,
)

CONNECTIONS = 50
# The second load: every request another returning reader's, in turn among this many, so that
# no two views of one second are alike (the recorder sends identical views as one line) and the
# publisher's memo of readers (10,000 Cookie headers) never holds the next one: what counting
# costs at its dearest.
MANY_READERS = 100_000
CATEGORY = {"slug": "tin-hoat-dong", "name": "Tin hoạt động"}
HTML = "text/html; charset=utf-8"


@benchmark(
    "page_throughput",
    description="cached article page, counting on/off, vs bare aiohttp and nginx with the same"
    " bytes; cold render with 10^5 articles",
)
def page_throughput(ctx: Context) -> Results:
    rounds = ctx.pick(5, 1)
    duration = ctx.pick(4.0, 2.0)
    cold_requests = ctx.pick(200, 40)
    budget = ctx.pick(60.0, 5.0)  # s per cold-render measurement
    bulk_size = ctx.pick(10**5, 10**4)
    settle_timeout = ctx.pick(60.0, 15.0)

    with with_stack() as stack:
        database_url, redis_url = backends(stack)
        path = asyncio.run(_publish(stack))
        common = {
            "BANTIN_DATABASE_URL": database_url,
            "BANTIN_REDIS_URL": redis_url,
            "BANTIN_PUBLIC_URL": stack.site_url,  # the same links as the stack's own site
            "BANTIN_ADMIN_TOKEN": stack.admin_token,
            "BANTIN_LOG_LEVEL": "WARNING",
        }
        headers = reader_headers()
        settled = Settled()
        with (
            bantin_role("publisher", {**common, "BANTIN_COUNT_VIEWS": "on"}) as (on_url, on_proc),
            bantin_role("publisher", {**common, "BANTIN_COUNT_VIEWS": "off"}) as (
                off_url,
                off_proc,
            ),
        ):
            meter = _CpuMeter({"counting_on": on_proc.pid, "counting_off": off_proc.pid})
            counting = loadgen.Target("counting_on", on_url + path, headers=headers)
            page = loadgen.check(counting).body
            scratch = Path(tempfile.mkdtemp(prefix="bantin-bench-page-"))
            (scratch / "page.html").write_bytes(page)
            with (
                contextlib.ExitStack() as cleanup,
                with_bare_server(body_file=scratch / "page.html", content_type=HTML) as bare_url,
                with_nginx(page, HTML) as nginx_url,
            ):
                cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
                targets = [
                    counting,
                    loadgen.Target("bare", bare_url + "/", headers=headers),
                    loadgen.Target("counting_off", off_url + path, headers=headers),
                ]
                if nginx_url is not None:
                    targets.insert(2, loadgen.Target("nginx", nginx_url, headers=headers))
                _check_sizes(targets, len(page))
                say(f"  load: {CONNECTIONS} connections, {rounds} x {duration:.0f} s, alternating")

                def after(target: loadgen.Target) -> None:
                    meter.mark(target.name)
                    # the counters worker drains what was recorded before the next measurement
                    settle(redis_url, timeout=settle_timeout, record=settled)

                def alternate(group: list[loadgen.Target]) -> dict[str, list[LoadResult]]:
                    return loadgen.alternate(
                        group,
                        rounds=rounds,
                        connections=CONNECTIONS,
                        duration=duration,
                        warmup=ctx.pick(1.0, 0.5),
                        between=after,
                    )

                runs = alternate(targets)
                say(f"  the same with {MANY_READERS:,} readers in turn")
                runs_many = alternate(
                    [
                        loadgen.Target(
                            f"{t.name}_many", t.url, headers=headers, readers=MANY_READERS
                        )
                        for t in targets
                        if t.name in ("counting_on", "bare", "counting_off")
                    ]
                )
            counted = _counted(redis_url)

        say(f"  cold render: {cold_requests} sequential requests, page cache off")
        cold_env = {**common, "BANTIN_PAGE_CACHE_SECONDS": "0", "BANTIN_COUNT_VIEWS": "off"}
        with bantin_role("publisher", cold_env) as (cold_url, _):
            cold_small = asyncio.run(_sequential(cold_url + path, cold_requests, budget))
            say(f"  inserting {bulk_size:,} published articles")
            inserted_s = _bulk(database_url, bulk_size)
            articles = bulk.count_articles(database_url)
            cold_large = asyncio.run(_sequential(cold_url + path, cold_requests, budget))
            parts = asyncio.run(_render_parts(database_url, path, ctx.pick(20, 5)))

    runs.update(runs_many)
    s = {name: loadgen.summary(rs) for name, rs in runs.items()}
    on, off, bare = s["counting_on"], s["counting_off"], s["bare"]
    on_many, off_many, bare_many = (s[f"{n}_many"] for n in ("counting_on", "counting_off", "bare"))
    nginx = s.get("nginx")
    ratios = {
        "counting_on_vs_bare_rps": ratio(on["median_rps"], bare["median_rps"]),
        "counting_on_vs_counting_off_rps": ratio(on["median_rps"], off["median_rps"]),
        "counting_off_vs_bare_rps": ratio(off["median_rps"], bare["median_rps"]),
        "counting_on_vs_nginx_rps": ratio(on["median_rps"], nginx["median_rps"]) if nginx else None,
        "bare_vs_nginx_rps": ratio(bare["median_rps"], nginx["median_rps"]) if nginx else None,
        "counting_on_vs_bare_p99_latency": ratio(on["p99_ms"], bare["p99_ms"]),
        "counting_on_vs_bare_rps_paired_median": loadgen.paired_median(runs, "counting_on", "bare"),
        "counting_on_vs_off_rps_paired_median": loadgen.paired_median(
            runs, "counting_on", "counting_off"
        ),
        "cold_render_large_vs_small": ratio(cold_large["median"], cold_small["median"]),
        # every request another reader's (MANY_READERS in turn): not the goals' load, shown
        # for what counting costs when no two views are alike
        "many_readers_counting_on_vs_bare_rps": ratio(
            on_many["median_rps"], bare_many["median_rps"]
        ),
        "many_readers_counting_on_vs_off_rps": ratio(on_many["median_rps"], off_many["median_rps"]),
    }
    paired = loadgen.paired_ratios(runs, "counting_on", "counting_off")
    cpu = meter.per_request(runs, rounds)
    ratios["publisher_cpu_per_page_on_vs_off"] = ratio(
        cpu.get("counting_on"), cpu.get("counting_off")
    )
    ratios["many_readers_publisher_cpu_per_page_on_vs_off"] = ratio(
        cpu.get("counting_on_many"), cpu.get("counting_off_many")
    )
    goals = {
        "counting_on_vs_bare_at_least_0_9": (ratios["counting_on_vs_bare_rps"] or 0) >= 0.9,
        "counting_on_vs_off_at_least_0_95": (ratios["counting_on_vs_counting_off_rps"] or 0)
        >= 0.95,
        "cold_render_under_10_ms": cold_large["median"] < 10.0,
    }
    rows = [
        (
            "page (counting on) : bare",
            f"{fmt_ratio(ratios['counting_on_vs_bare_rps'])}   ({on['median_rps']:,.0f} vs"
            f" {bare['median_rps']:,.0f} req/s; goal >= 0.9:"
            f" {'met' if goals['counting_on_vs_bare_at_least_0_9'] else 'MISSED'})",
        ),
        (
            "counting on : off",
            f"{fmt_ratio(ratios['counting_on_vs_counting_off_rps'])}   ({on['median_rps']:,.0f} vs"
            f" {off['median_rps']:,.0f} req/s; goal >= 0.95:"
            f" {'met' if goals['counting_on_vs_off_at_least_0_95'] else 'MISSED'})",
        ),
    ]
    if nginx:
        rows.append(
            (
                "page (counting on) : nginx",
                f"{fmt_ratio(ratios['counting_on_vs_nginx_rps'])}   ({on['median_rps']:,.0f} vs"
                f" {nginx['median_rps']:,.0f} req/s)",
            )
        )
    rows += [
        (
            f"{MANY_READERS:,} readers in turn: on : bare, on : off",
            f"{fmt_ratio(ratios['many_readers_counting_on_vs_bare_rps'])},"
            f" {fmt_ratio(ratios['many_readers_counting_on_vs_off_rps'])}"
            f"   ({on_many['median_rps']:,.0f}, {bare_many['median_rps']:,.0f},"
            f" {off_many['median_rps']:,.0f} req/s)",
        ),
        (
            "publisher CPU per page, on : off",
            f"{fmt_ratio(ratios['publisher_cpu_per_page_on_vs_off'])}"
            f"   ({_us(cpu, 'counting_on')} vs {_us(cpu, 'counting_off')} us;"
            f" {MANY_READERS:,} readers:"
            f" {_us(cpu, 'counting_on_many')} vs {_us(cpu, 'counting_off_many')} us)",
        ),
        (
            "p99 at 50 connections",
            f"on {on['p99_ms']:.1f} ms, off {off['p99_ms']:.1f} ms, bare {bare['p99_ms']:.1f} ms"
            + (f", nginx {nginx['p99_ms']:.1f} ms" if nginx else ""),
        ),
        (
            f"cold render, {articles:,} articles",
            f"median {cold_large['median']:.1f} ms (with 1 article: {cold_small['median']:.1f} ms;"
            f" goal < 10 ms: {'met' if goals['cold_render_under_10_ms'] else 'MISSED'})",
        ),
    ]
    banner("page_throughput", rows)
    out: dict[str, Any] = {
        "params": {
            **loadgen.generator_info(),
            "nginx": nginx_version() or "not installed",
            "connections": CONNECTIONS,
            "many_readers": MANY_READERS,
            "rounds": rounds,
            "duration_s": duration,
            "page_bytes": len(page),
            "page": path,
            "cold_requests": cold_requests,
            "articles_for_cold_render": articles,
        },
        "ratios": ratios,
        "goals": goals,
        "on_vs_off_by_round": paired,
        # CPU time of the publisher process per page answered (user + system, us; median of
        # the rounds): what counting costs the publisher, less noisy than its throughput
        "publisher_cpu_us_per_page": cpu,
    }
    for name in s:
        out[name] = {
            k: s[name][k] for k in ("median_rps", "p50_ms", "p99_ms", "rounds_rps", "errors")
        }
    out["cold_render_1_article_ms"] = {k: v for k, v in cold_small.items() if k != "samples"}
    out[f"cold_render_{articles}_articles_ms"] = {
        k: v for k, v in cold_large.items() if k != "samples"
    }
    out["cold_render_db_parts_ms"] = {k: v for k, v in parts.items() if k.endswith("_ms")}
    out["related_news"] = {k: v for k, v in parts.items() if not k.endswith("_ms")}
    out["background"] = {
        "views_counted_total": counted,
        "settle_waits": settled.waits,
        "settle_total_s": settled.seconds,
        "settle_timeouts": settled.timeouts,
        "bulk_insert_s": inserted_s,
    }
    # In the JSON file only (the table shows one level of nesting).
    out["detail"] = {
        "statuses": {name: s[name]["statuses"] for name in s},
        "cold_samples_ms": {"small": cold_small["samples"], "large": cold_large["samples"]},
        "rounds": {name: [r.as_dict() for r in rs] for name, rs in runs.items()},
    }
    return out


def _us(cpu: dict[str, float | None], name: str) -> str:
    value = cpu.get(name)
    return "n/a" if value is None else f"{value:.1f}"


class _CpuMeter:
    """CPU time (user + system) of the publisher processes, per measurement: `mark(name)`
    after each one (loadgen.alternate's `between`) gives the process serving `name` (or
    `name` + "_many") the CPU it used since the previous mark of any target, idle time between
    measurements included (a flush every 100 ms, nothing else). The flush of a measurement's
    last 100 ms may land after its mark, and is not counted."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.last = self._now()
        self.used: dict[str, list[float]] = {}

    def _now(self) -> dict[str, float]:
        return {name: sum(p.cpu_times()[:2]) for name, p in self.procs.items()}

    def mark(self, name: str) -> None:
        now = self._now()
        served = name.removesuffix("_many")
        if served in now:
            self.used.setdefault(name, []).append(now[served] - self.last[served])
        self.last = now

    def per_request(
        self, runs: dict[str, list[LoadResult]], rounds: int
    ) -> dict[str, float | None]:
        """us of CPU per answered request, median of the measured rounds (the warm-ups,
        marked first, are left out)."""
        out: dict[str, float | None] = {}
        for name, used in self.used.items():
            pairs = zip(used[-rounds:], runs.get(name, [])[-rounds:], strict=False)
            values = [cpu / r.requests * 1e6 for cpu, r in pairs if r.requests]
            out[name] = statistics.median(values) if values else None
        return out


async def _publish(stack: Stack) -> str:
    """Post the seed article (text) and wait until its page answers; returns its path."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await ensure_category(session, stack, **CATEGORY)
        answer = await post_article(session, stack, text_only(demo_seed()["article"]))
        url = stack.site(urlsplit(answer["links"]["page"]).path)
        deadline = time.monotonic() + 60
        while True:
            async with session.get(url, headers=reader_headers()) as response:
                await response.read()
                if response.status == 200:
                    return urlsplit(url).path
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer 200 within 60 s")
            await asyncio.sleep(0.1)


def _check_sizes(targets: list[loadgen.Target], size: int) -> None:
    """The same page everywhere (the statistics block may differ by a digit or two)."""
    for target in targets:
        got = len(loadgen.check(target).body)
        if abs(got - size) > 32:
            raise RuntimeError(f"{target.name} answers {got} bytes, the page is {size}")


def _counted(redis_url: str) -> int:
    from redis import Redis

    from shared import keys

    with Redis.from_url(redis_url, socket_timeout=5) as r:
        return int(r.get(keys.TOTAL) or 0)


async def _sequential(url: str, count: int, budget: float) -> dict[str, Any]:
    """`count` GETs one after another on one connection (each renders: no page cache), or
    fewer (at least five) if they take more than `budget` seconds in all."""
    samples: list[float] = []
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for n in range(count + 3):
            if len(samples) >= 5 and time.monotonic() - started > budget:
                break
            t0 = time.perf_counter()
            async with session.get(url, headers=reader_headers()) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}")
            if n >= 3:  # the first ones warm the connection pool and the templates
                samples.append((time.perf_counter() - t0) * 1000)
    stats = summarize(samples, (90, 99))
    return {
        "median": stats["median"],
        "p90": stats["p90"],
        "p99": stats["p99"],
        "min": stats["min"],
        "mean": statistics.fmean(samples),
        "samples": samples,
    }


def _bulk(database_url: str, size: int) -> float:
    """Published articles in the seed's category and five more, in the stack's database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT id FROM categories WHERE slug = %s", (CATEGORY["slug"],)
        ).fetchone()
        assert row is not None
        ids = [int(row[0]), *bulk.ensure_categories(conn)]
    newest = datetime.now(UTC).replace(microsecond=0).isoformat()
    return bulk.insert_published(database_url, 1, size, newest=newest, category_ids=ids)


async def _render_parts(database_url: str, path: str, repeats: int) -> dict[str, Any]:
    """Where a cold render's time goes: the article page's three queries, timed one by one
    in this process (median of `repeats`), and how many articles share a word with its title
    (the candidates related news ranks)."""
    from psycopg.rows import dict_row

    from services.publisher import pages, queries, views
    from shared import articles, site

    article_id = int(path.rsplit("-", 1)[1])
    times: dict[str, list[float]] = {"chrome_ms": [], "article_ms": [], "related_ms": []}
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        for _ in range(repeats):
            t0 = time.perf_counter()
            await site.chrome(conn)
            t1 = time.perf_counter()
            article = await articles.get_article(conn, article_id)
            t2 = time.perf_counter()
            tsquery = pages.related_tsquery(article.title)
            await queries.related(conn, article, tsquery, views.RELATED)
            t3 = time.perf_counter()
            times["chrome_ms"].append((t1 - t0) * 1000)
            times["article_ms"].append((t2 - t1) * 1000)
            times["related_ms"].append((t3 - t2) * 1000)
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE search_vector @@ to_tsquery('simple', %s)) AS matching,"
            " count(*) AS published FROM articles WHERE status = 'published'",
            (tsquery or "",),
        )
        row = await cur.fetchone()
    assert row is not None
    out: dict[str, Any] = {k: statistics.median(v) for k, v in times.items()}
    out["published_articles"] = int(row["published"])
    out["sharing_a_title_word"] = int(row["matching"])
    out["candidates_cap_per_group"] = queries.RELATED_CANDIDATES
    return out
