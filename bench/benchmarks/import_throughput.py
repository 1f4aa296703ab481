"""Issue 20: text articles imported per second by `bantin import wordpress`, against PostgreSQL's
own COPY of the same rows (the limit: goal >= 0.3x, and >= 2,000 articles/s on a 2-core
machine) and against today's path, one POST per article; and the peak RSS of imports of 10^4
and 10^5 articles (flat: the export is streamed, never held whole)."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from html import escape
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import psycopg

from bantin.bootstrap import demo_seed, text_only
from bench.registry import Context, Results, benchmark
from bench.stack import Stack, ensure_category, post_article, with_stack
from bench.stats import ratio
from bench.support import backends, banner, fmt_ratio, say

MIB = 1024 * 1024
POST_CLIENTS = 16
RATE_GOAL = 2000.0
COPY_GOAL = 0.3


@benchmark(
    "import_throughput",
    description="bantin import wordpress (articles/s) vs PostgreSQL COPY of the same rows and"
    " vs one POST per article; peak RSS of 10^4 and 10^5-article imports",
)
def import_throughput(ctx: Context) -> Results:
    sizes = ctx.pick((10_000, 100_000), (2_000, 10_000))
    posts = ctx.pick(1_000, 200)
    # The POST baseline sends more than a token's default rate limit allows.
    unlimited = {"BANTIN_RATE_LIMIT_PER_MINUTE": str(10**9)}
    with (
        tempfile.TemporaryDirectory(prefix="bantin-bench-import-") as scratch,
        with_stack(workers=1, env=unlimited) as stack,
    ):
        database_url, redis_url = backends(stack)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BANTIN_")},
            "BANTIN_HOME": str(stack.home),
            "BANTIN_DATABASE_URL": database_url,
            "BANTIN_REDIS_URL": redis_url,
            "BANTIN_LOG_LEVEL": "WARNING",
        }
        runs = []
        for n in sizes:
            export = Path(scratch) / f"wxr-{n}.xml"
            say(f"  writing a WordPress export of {n:,} articles")
            size = _write_wxr(export, n, secrets.token_hex(3))
            say(f"  bantin import wordpress ({size / MIB:.0f} MiB)")
            run = _import(export, env)
            run.update(articles=n, export_bytes=size)
            runs.append(run)
            export.unlink()
        say("  PostgreSQL COPY of the same rows")
        copy = _copy_baseline(database_url, sizes[-1])
        say(f"  one POST per article: {posts} articles, {POST_CLIENTS} clients")
        posted = asyncio.run(_post_each(stack, posts))

    big = runs[-1]
    rate = big["articles"] / big["seconds"]
    ratios = {
        "import_vs_copy": ratio(rate, copy["rows_per_s"]),
        "import_vs_post_each": ratio(rate, posted["articles_per_s"]),
        "peak_rss_big_vs_small": ratio(runs[-1]["peak_rss_bytes"], runs[0]["peak_rss_bytes"]),
    }
    goals = {
        "at_least_2000_per_s": rate >= RATE_GOAL,
        "at_least_0.3x_copy": (ratios["import_vs_copy"] or 0) >= COPY_GOAL,
    }
    banner(
        "import_throughput",
        [
            (
                "import : COPY",
                f"{fmt_ratio(ratios['import_vs_copy'])}   ({rate:,.0f} vs"
                f" {copy['rows_per_s']:,.0f} rows/s; goals >= {RATE_GOAL:,.0f}/s"
                f" {'met' if goals['at_least_2000_per_s'] else 'MISSED'}, >= {COPY_GOAL}x"
                f" {'met' if goals['at_least_0.3x_copy'] else 'MISSED'})",
            ),
            (
                "import : one POST each",
                f"{fmt_ratio(ratios['import_vs_post_each'])}   ({rate:,.0f} vs"
                f" {posted['articles_per_s']:,.0f} articles/s)",
            ),
            *(
                (
                    f"peak RSS, {r['articles']:,} articles",
                    f"{r['peak_rss_bytes'] / MIB:.0f} MiB (import process and its pool)",
                )
                for r in runs
            ),
        ],
    )
    return {
        "params": {"sizes": list(sizes), "posts": posts, "cpus": os.cpu_count()},
        "ratios": ratios,
        "goals": goals,
        "import": {"articles_per_s": rate, "seconds": big["seconds"]},
        "copy": copy,
        "post_each": posted,
        "detail": {"runs": runs},
    }


def _write_wxr(path: Path, n: int, run: str) -> int:
    """A WordPress export of `n` published text articles built on the seed's real page."""
    seed = text_only(demo_seed()["article"])
    body = seed["body"]
    ns = "http://wordpress.org/export/1.2/"
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8" ?>\n<rss version="2.0"'
            f' xmlns:excerpt="{ns}excerpt/" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
            f' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:wp="{ns}">\n<channel>\n'
            f"<title>Bench</title><link>http://bench-{run}.example.vn</link>\n"
            f"<wp:base_site_url>http://bench-{run}.example.vn</wp:base_site_url>\n"
        )
        for i in range(1, n + 1):
            out.write(
                f"<item><title>{escape(seed['title'])} ({i})</title>"
                f"<link>http://bench-{run}.example.vn/{i}/</link>"
                f"<dc:creator><![CDATA[bientap]]></dc:creator>"
                f"<content:encoded><![CDATA[{body}]]></content:encoded>"
                f"<excerpt:encoded><![CDATA[{seed.get('summary', '')}]]></excerpt:encoded>"
                f"<wp:post_id>{i}</wp:post_id>"
                f"<wp:post_date_gmt><![CDATA[2021-{1 + i % 12:02d}-{1 + i % 28:02d} 03:00:00]]>"
                "</wp:post_date_gmt><wp:status><![CDATA[publish]]></wp:status>"
                "<wp:post_type><![CDATA[post]]></wp:post_type>"
                '<category domain="category" nicename="tin-hoat-dong"><![CDATA[Tin hoạt động]]>'
                "</category></item>\n"
            )
        out.write("</channel>\n</rss>\n")
    return path.stat().st_size


def _import(export: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run the import; its wall time and the peak RSS of it and its pool, sampled."""
    peak = 0
    stop = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bantin.cli", "import", "wordpress", str(export)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )

    def sample() -> None:
        nonlocal peak
        main = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                family = [main, *main.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in family))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate(timeout=3600)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"the import exited {proc.returncode}: {out[-2000:]}")
    return {"seconds": seconds, "peak_rss_bytes": peak, "summary": out.strip()}


def _copy_baseline(database_url: str, n: int) -> dict[str, Any]:
    """COPY of the rows the import wrote (the same columns, the same indexes), into a copy of
    the articles table: what PostgreSQL itself can take."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        data = io.BytesIO()
        columns = (
            "uuid, slug, category_id, title, summary, body_source, body_format, body_html,"
            " author, unit, tags, gallery_title, published_at, search_text, status"
        )
        with conn.cursor().copy(
            f"COPY (SELECT {columns} FROM articles ORDER BY id DESC LIMIT {int(n)}) TO STDOUT"
        ) as copy:
            for block in copy:
                data.write(block)
        conn.execute("DROP TABLE IF EXISTS bench_articles")
        conn.execute("CREATE TABLE bench_articles (LIKE articles INCLUDING ALL)")
        raw = data.getvalue()
        t0 = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(f"COPY bench_articles ({columns}) FROM STDIN") as copy,
        ):
            for i in range(0, len(raw), 1 << 20):
                copy.write(raw[i : i + (1 << 20)])
        seconds = time.perf_counter() - t0
        conn.execute("DROP TABLE bench_articles")
    return {"rows": n, "seconds": seconds, "rows_per_s": n / seconds, "bytes": len(raw)}


async def _post_each(stack: Stack, n: int) -> dict[str, Any]:
    seed = text_only(demo_seed()["article"])
    gate = asyncio.Semaphore(POST_CLIENTS)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await ensure_category(session, stack, "tin-hoat-dong", "Tin hoạt động")

        async def one(i: int) -> None:
            async with gate:
                await post_article(session, stack, {**seed, "title": f"{seed['title']} [{i}]"})

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        seconds = time.perf_counter() - t0
    return {"articles": n, "seconds": seconds, "articles_per_s": n / seconds}
