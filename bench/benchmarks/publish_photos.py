"""From submit to the public page live with its photos, for an article with 3 photos of 12 MP
(issue 19's "Measure": goal 2 s or less on a 2-core machine), against the text-only publish
latency measured in the same run. Then two photo articles sent together, and a second sent
as soon as a first is live: by then the first's remaining renditions (AVIF, every other width:
`render_rest`) are queued, and the second waits for whatever they hold the workers with.

"Live with its photos": the page answers 200, shows the 3 photos, and every image address in
its <main> (each src and srcset) answers 200.
"""

from __future__ import annotations

import asyncio
import io
import re
import secrets
import statistics
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import aiohttp
import psycopg
from PIL import Image

from bantin.bootstrap import demo_seed, text_only
from bench.benchmarks.publish_latency import CATEGORY, GIVE_UP, POLL_INTERVAL, poll_page
from bench.cli import ROOT
from bench.net import require_loopback
from bench.registry import Context, Results, benchmark
from bench.stack import Stack, StackError, ensure_category, post_article, with_stack
from bench.stats import ratio, summarize
from bench.support import backends, banner, fmt_ratio, say, settle
from tests.photos import multipart

PHOTOS = 3
PHOTO = ROOT / "bench" / "data" / "bench-12mp.jpg"  # 4000x3000, see bench/data/README.md
GIVE_UP_PHOTOS = 120.0  # s per photo article (the second waits for the first's leftovers)
MAIN = re.compile(r"<main\b.*?</main>", re.S)
IMG = re.compile(r"<img\b", re.S)
ADDRESSES = re.compile(r'\b(?:src|srcset)="([^"]+)"')


@benchmark(
    "publish_photos",
    description="POST an article with 3 photos of 12 MP -> its page and every photo answer 200,"
    " vs a text-only article; then two photo articles together, and one right after another",
)
def publish_photos(ctx: Context) -> Results:
    rounds = ctx.pick(3, 1)
    texts = ctx.pick(5, 2)  # text-only articles a round
    quiet_timeout = ctx.pick(240.0, 120.0)
    # Photos that differ in their pixels (renditions are content-addressed: copies of one
    # photo would share them), made before the clock starts.
    base = Image.open(PHOTO)
    base.load()
    photos = [_variant(base, k) for k in range(PHOTOS * (rounds + 4))]
    with with_stack() as stack:
        database_url, redis_url = backends(stack)
        results = asyncio.run(
            _measure(stack, database_url, redis_url, rounds, texts, photos, quiet_timeout)
        )
        results["stack_ready_s"] = stack.ready_s
    return results


@dataclass
class Timed:
    page_ms: float | None  # POST sent -> page 200
    live_ms: float | None  # POST sent -> page 200 with every photo answering 200
    images: int = 0  # addresses of photos checked on the page


async def _measure(
    stack: Stack,
    database_url: str,
    redis_url: str,
    rounds: int,
    texts: int,
    photos: list[bytes],
    quiet_timeout: float,
) -> Results:
    run = secrets.token_hex(3)
    photo_bytes = statistics.median(len(p) for p in photos)  # (each article takes 3 of them)
    seed = text_only(demo_seed()["article"])
    text_ms: list[float] = []
    single: list[Timed] = []
    timeout = aiohttp.ClientTimeout(total=60)
    waits: list[float] = []

    async def quiet() -> None:
        waits.append(await asyncio.to_thread(_quiet, database_url, redis_url, quiet_timeout))

    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=16)
    ) as session:
        await ensure_category(session, stack, **CATEGORY)
        for n in range(rounds):
            for i in range(texts):
                article = {**seed, "title": f"{seed['title']} (bench {run} {n + 1}.{i + 1})"}
                t0 = time.perf_counter()
                answer = await post_article(session, stack, article)
                poll = await poll_page(
                    session, require_loopback(answer["links"]["page"]), t0 + GIVE_UP
                )
                if poll.seen_at is not None:
                    text_ms.append((poll.seen_at - t0) * 1000)
            await quiet()
            timed = await _photo_article(session, stack, seed, photos, f"{run} {n + 1}")
            single.append(timed)
            say(
                f"  round {n + 1}/{rounds}: text median"
                f" {_ms(statistics.median(text_ms) if text_ms else None)},"
                f" photos page {_ms(timed.page_ms)}, live {_ms(timed.live_ms)}"
            )
            await quiet()
        # Two photo articles sent together: the second's photos queue behind the first's.
        together = await asyncio.gather(
            _photo_article(session, stack, seed, photos, f"{run} together 1"),
            _photo_article(session, stack, seed, photos, f"{run} together 2", delay=0.05),
        )
        await quiet()
        # A second sent as soon as the first is live: the first's remaining renditions
        # (render_rest) are queued by then, ahead of the second's first stage.
        after = [await _photo_article(session, stack, seed, photos, f"{run} after 1")]
        after.append(await _photo_article(session, stack, seed, photos, f"{run} after 2"))
        for name, pair in (("together", together), ("right after", after)):
            say(f"  {name}: first live {_ms(pair[0].live_ms)}, second {_ms(pair[1].live_ms)}")
        await quiet()

    live = [t.live_ms for t in single if t.live_ms is not None]
    page = [t.page_ms for t in single if t.page_ms is not None]
    text = summarize(text_ms, (95,))
    live_stats = summarize(live, ())
    ratios = {
        "photos_live_vs_text_latency": ratio(live_stats.get("median"), text.get("median")),
        "second_after_first_vs_single_live": ratio(after[1].live_ms, live_stats.get("median")),
    }
    banner(
        f"{PHOTOS} photos of 12 MP: submit -> page live with its photos (goal <= 2 s)",
        [
            (
                "photos live",
                f"median {_ms(live_stats.get('median'))} of {len(live)}:"
                f" {', '.join(_ms(v) for v in live)}",
            ),
            ("text only", f"median {_ms(text.get('median'))} of {len(text_ms)}"),
            ("ratio", fmt_ratio(ratios["photos_live_vs_text_latency"])),
            ("sent together", f"{_ms(together[0].live_ms)}, {_ms(together[1].live_ms)}"),
            ("2nd right after", f"{_ms(after[0].live_ms)}, then {_ms(after[1].live_ms)}"),
        ],
    )
    return {
        "params": {
            "photos": PHOTOS,
            "photo_bytes": photo_bytes,
            "rounds": rounds,
            "text_articles_per_round": texts,
            "poll_interval_ms": POLL_INTERVAL * 1000,
        },
        "photos_live_ms": {k: v for k, v in live_stats.items() if k != "n"},
        "photos_page_ms": {k: v for k, v in summarize(page, ()).items() if k != "n"},
        "text_ms": {k: v for k, v in text.items() if k != "n"},
        "together_live_ms": {"first": together[0].live_ms, "second": together[1].live_ms},
        "right_after_live_ms": {"first": after[0].live_ms, "second": after[1].live_ms},
        "right_after_page_ms": {"first": after[0].page_ms, "second": after[1].page_ms},
        "ratios": ratios,
        "quiet_waits_s": waits,
        "samples_live_ms": live,
        "samples_text_ms": text_ms,
        "images_checked": [t.images for t in single],
    }


def _variant(base: Image.Image, k: int) -> bytes:
    """The 12 MP photo with a square of its own (place and colour from k), as a JPEG."""
    image = base.copy()
    x, y = 200 + (k * 173) % 3400, 200 + (k * 97) % 2400
    image.paste((40 * k % 256, 90, 255 - 40 * k % 256), (x, y, x + 200, y + 200))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _ms(value: float | None) -> str:
    return "gave up" if value is None else f"{value:,.0f} ms"


async def _photo_article(
    session: aiohttp.ClientSession,
    stack: Stack,
    seed: dict[str, Any],
    photos: list[bytes],
    label: str,
    delay: float = 0.0,
) -> Timed:
    """POST it (multipart), then poll its page until it and every photo on it answer 200."""
    await asyncio.sleep(delay)
    article = {
        **seed,
        "title": f"{seed['title']} (ảnh, bench {label})",
        "images": [
            {"part": f"anh-{i}", "caption": f"Ảnh {i} của hội nghị", "role": "gallery"}
            for i in range(1, PHOTOS + 1)
        ],
    }
    parts = {f"anh-{i}": photos.pop() for i in range(1, PHOTOS + 1)}
    t0 = time.perf_counter()
    async with session.post(
        stack.api("/api/v1/articles"),
        data=multipart(article, parts),
        headers=stack.admin_headers,
    ) as response:
        if response.status != 202:
            raise StackError(f"posting photos: HTTP {response.status}: {await response.text()}")
        answer = await response.json()
    url = require_loopback(answer["links"]["page"])
    give_up_at = t0 + GIVE_UP_PHOTOS
    poll = await poll_page(session, url, give_up_at)
    if poll.seen_at is None:
        return Timed(None, None)
    timed = Timed((poll.seen_at - t0) * 1000, None)
    while time.perf_counter() < give_up_at:
        started = time.perf_counter()
        images = await _photos_answer(session, url)
        if images:
            timed.live_ms, timed.images = (time.perf_counter() - t0) * 1000, images
            return timed
        await asyncio.sleep(max(0.0, POLL_INTERVAL - (time.perf_counter() - started)))
    return timed


async def _photos_answer(session: aiohttp.ClientSession, url: str) -> int:
    """How many photo addresses the page's <main> has, if it shows every photo and each
    address answers 200; else 0."""
    async with session.get(url) as response:
        html = await response.text()
        if response.status != 200:
            return 0
    main = MAIN.search(html)
    if main is None or len(IMG.findall(main.group(0))) < PHOTOS:
        return 0
    addresses = set()
    for value in ADDRESSES.findall(main.group(0)):
        for candidate in value.split(","):
            address = candidate.strip().split(" ")[0]
            if address and not address.startswith("data:"):
                addresses.add(require_loopback(urllib.parse.urljoin(url, address)))
    for address in addresses:
        async with session.get(address) as response:
            await response.read()
            if response.status != 200:
                return 0
    return len(addresses)


def _quiet(database_url: str, redis_url: str, timeout: float) -> float:
    """Wait until the workers are done: every queue empty and every photo's renditions made
    (a task a worker has taken is off its queue); returns the seconds waited."""
    t0 = time.monotonic()
    settle(redis_url, timeout=timeout, stream=False)
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        while time.monotonic() - t0 < timeout:
            row = conn.execute(
                "SELECT count(*) FROM images WHERE completed_at IS NULL AND error IS NULL"
            ).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.2)
    return time.monotonic() - t0
