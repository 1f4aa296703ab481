"""The newsroom desk against the API it writes through (issue 19's "Measure"):

- desk_list: the desk's list of articles (`GET /desk/bai-viet/`, an editor's first page of
  50) against the API listing the same page (`GET /api/v1/articles`, limit 50), with 10^5
  articles in the database: goal, the desk within 2x of the API (throughput ratio >= 0.5).
- desk_memory: a 10-photo, 60 MB submission through the desk's form against the same through
  the API (multipart), each into a fresh `bantin ingest` process: its peak resident size
  while the submission is read, goal the desk's at most the API's (1.0x, plus noise).
"""

from __future__ import annotations

import asyncio
import io
import re
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from PIL import Image
from psycopg.rows import dict_row

from bench import bulk, loadgen
from bench.net import require_loopback
from bench.registry import Context, Results, benchmark
from bench.stack import Stack, ensure_category, with_stack
from bench.stats import ratio
from bench.support import backends, banner, bantin_role, fmt_ratio, say
from shared import accounts
from tests.desk_helpers import CSRF, PASSWORD, article_form
from tests.photos import multipart

SESSION_COOKIE = "bantin_desk"  # services/ingest/desk/web.py's COOKIE
PAGE = 50  # the desk's page of the list, and the API's default limit
PHOTOS = 10
PHOTO_BYTES = 6 * 1024 * 1024
CATEGORY = bulk.CATEGORIES[0]


async def make_account(database_url: str, username: str, role: str) -> None:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        await accounts.create(conn, username, PASSWORD, role, f"Người {username}")


async def sign_in(session: aiohttp.ClientSession, desk_url: str, username: str) -> str:
    """Sign in as a browser does (the sign-in form's CSRF cookie and field); returns the
    session's id, the desk's cookie (the session's jar must accept cookies of an address)."""
    async with session.get(require_loopback(desk_url + "/desk/")) as response:
        found = CSRF.search(await response.text())
    assert found, "no CSRF field on the sign-in page"
    form = {"csrf": found.group(1), "username": username, "password": PASSWORD}
    async with session.post(desk_url + "/desk/dang-nhap", data=form) as response:
        if response.status != 200 or not response.url.path.startswith("/desk/bai-viet"):
            raise RuntimeError(f"signing in as {username}: HTTP {response.status} {response.url}")
    for cookie in session.cookie_jar:
        if cookie.key == SESSION_COOKIE:
            return cookie.value
    raise RuntimeError("signed in, but no session cookie")


# --- desk_list -----------------------------------------------------------------------------------


@benchmark(
    "desk_list",
    description="the desk's list page (an editor's first 50) vs GET /api/v1/articles (limit 50),"
    " 10^5 articles",
)
def desk_list(ctx: Context) -> Results:
    size = ctx.pick(10**5, 10**4)
    rounds = ctx.pick(5, 1)  # a shared machine's drift: pairs measured seconds apart
    duration = ctx.pick(5.0, 2.0)
    connections = 4  # a newsroom's few people at once, not a crowd
    # The API's per-token limit (600 a minute) would answer most of the load with 429.
    with with_stack(env={"BANTIN_RATE_LIMIT_PER_MINUTE": str(10**9)}) as stack:
        database_url, _ = backends(stack)
        say(f"  inserting {size:,} published articles")
        newest = datetime.now(UTC).replace(microsecond=0).isoformat()
        inserted_s = bulk.insert_published(database_url, 1, size, newest=newest)
        articles = bulk.count_articles(database_url)
        sid = asyncio.run(_editor_session(stack, database_url))
        desk = loadgen.Target(
            "desk",
            stack.api("/desk/bai-viet/"),
            headers={"Cookie": f"{SESSION_COOKIE}={sid}", "Accept-Encoding": "identity"},
        )
        api = loadgen.Target(
            "api",
            stack.api(f"/api/v1/articles?limit={PAGE}"),
            headers={**stack.admin_headers, "Accept-Encoding": "identity"},
        )
        _check_same_page(desk, api)
        say(f"  load: {connections} connections, {rounds} x {duration:.0f} s, alternating")
        runs = loadgen.alternate(
            [desk, api], rounds=rounds, connections=connections, duration=duration
        )
    s = {name: loadgen.summary(rs) for name, rs in runs.items()}
    ratios = {
        "desk_vs_api_rps": ratio(s["desk"]["median_rps"], s["api"]["median_rps"]),
        "desk_vs_api_rps_paired_median": loadgen.paired_median(runs, "desk", "api"),
        "desk_vs_api_p50_latency": ratio(s["desk"]["p50_ms"], s["api"]["p50_ms"]),
    }
    banner(
        f"desk list : API listing, {articles:,} articles (goal: throughput >= 0.5x)",
        [
            ("throughput", fmt_ratio(ratios["desk_vs_api_rps"])),
            ("paired", fmt_ratio(ratios["desk_vs_api_rps_paired_median"])),
            ("desk", f"{s['desk']['median_rps']:,.0f}/s, p50 {s['desk']['p50_ms']:.1f} ms"),
            ("API", f"{s['api']['median_rps']:,.0f}/s, p50 {s['api']['p50_ms']:.1f} ms"),
        ],
    )
    return {
        "params": {
            "articles": articles,
            "page": PAGE,
            "connections": connections,
            "rounds": rounds,
            "duration_s": duration,
            **loadgen.generator_info(),
        },
        "bulk_insert_s": inserted_s,
        "desk": s["desk"],
        "api": s["api"],
        "ratios": ratios,
        "rounds_ratios": loadgen.paired_ratios(runs, "desk", "api"),
    }


async def _editor_session(stack: Stack, database_url: str) -> str:
    await make_account(database_url, "bientap", "editor")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        return await sign_in(session, stack.api_url, "bientap")


def _check_same_page(desk: loadgen.Target, api: loadgen.Target) -> None:
    """Both list the same 50 articles (the bulk's titles end in "(số N)")."""
    numbers = re.compile(r"\(số (\d+)\)")
    page = set(numbers.findall(loadgen.check(desk).body.decode()))
    answer = loadgen.check(api).body.decode()
    listed = set(numbers.findall(answer.encode().decode("unicode_escape", "ignore")))
    listed |= set(numbers.findall(answer))
    if len(page) != PAGE or page != listed:
        raise RuntimeError(f"the desk lists {sorted(page)}, the API {sorted(listed)}")


# --- desk_memory ---------------------------------------------------------------------------------


@benchmark(
    "desk_memory",
    description="a 10-photo, 60 MB submission: the ingest process's peak memory, desk form vs API",
)
def desk_memory(ctx: Context) -> Results:
    rounds = ctx.pick(3, 1)
    photo = _big_jpeg()
    growth: dict[str, list[int]] = {"api": [], "desk": []}
    peaks: dict[str, list[int]] = {"api": [], "desk": []}
    # One worker: the renditions of what is submitted are not measured, only made.
    with with_stack(workers=1) as stack:
        database_url, redis_url = backends(stack)
        env = {
            "BANTIN_DATABASE_URL": database_url,
            "BANTIN_REDIS_URL": redis_url,
            "BANTIN_PUBLIC_URL": stack.site_url,
            "BANTIN_ADMIN_TOKEN": stack.admin_token,
            "BANTIN_MEDIA_DIR": str(stack.home / "media"),  # where the stack's workers look
            "BANTIN_LOG_LEVEL": "WARNING",
        }
        asyncio.run(_prepare(stack, database_url))
        for n in range(rounds):
            for way in ("api", "desk"):
                with bantin_role("ingest", env) as (url, proc):
                    grown, peak = asyncio.run(_submit(stack, url, proc.pid, way, photo, n))
                growth[way].append(grown)
                peaks[way].append(peak)
                say(
                    f"  round {n + 1}/{rounds} {way:<4}  peak +{grown / 2**20:6.1f} MiB"
                    f"  (VmHWM {peak / 2**20:6.1f} MiB)"
                )
    med = {way: statistics.median(values) for way, values in growth.items()}
    med_peak = {way: statistics.median(values) for way, values in peaks.items()}
    ratios = {
        "desk_vs_api_peak_rss": ratio(med_peak["desk"], med_peak["api"]),
        "desk_vs_api_peak_growth": ratio(med["desk"], med["api"]),
    }
    banner(
        f"ingest peak memory, {PHOTOS} photos of {PHOTO_BYTES / 2**20:.0f} MiB: desk : API"
        " (goal <= 1.0x)",
        [
            ("peak RSS", fmt_ratio(ratios["desk_vs_api_peak_rss"])),
            ("peak growth", fmt_ratio(ratios["desk_vs_api_peak_growth"])),
            ("desk", f"+{med['desk'] / 2**20:.1f} MiB, VmHWM {med_peak['desk'] / 2**20:.1f} MiB"),
            ("API", f"+{med['api'] / 2**20:.1f} MiB, VmHWM {med_peak['api'] / 2**20:.1f} MiB"),
        ],
    )
    return {
        "params": {"photos": PHOTOS, "photo_bytes": PHOTO_BYTES, "rounds": rounds},
        "growth_bytes": {"api": med["api"], "desk": med["desk"]},
        "peak_rss_bytes": {"api": med_peak["api"], "desk": med_peak["desk"]},
        "ratios": ratios,
        "rounds_growth_bytes": growth,
        "rounds_peak_rss_bytes": peaks,
    }


def _big_jpeg() -> bytes:
    """A valid JPEG of 6 MiB: noise compresses badly, padding after its end marker fills the
    rest (decoders stop there), so that the workers' renditions stay cheap."""
    out = io.BytesIO()
    Image.effect_noise((1600, 1200), 80).convert("RGB").save(out, "JPEG", quality=95)
    data = out.getvalue()
    return data + b"\0" * max(0, PHOTO_BYTES - len(data))


async def _prepare(stack: Stack, database_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        await ensure_category(session, stack, *CATEGORY)
    await make_account(database_url, "vanphong", "submitter")


def _status_of(pid: int, field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    if match is None:
        raise RuntimeError(f"no {field} in /proc/{pid}/status")
    return int(match.group(1)) * 1024


def _reset_peak(pid: int) -> int:
    """Linux: writing 5 to clear_refs resets the peak (VmHWM) to the current size; returns it."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_of(pid, "VmRSS")


async def _submit(
    stack: Stack, url: str, pid: int, way: str, photo: bytes, n: int
) -> tuple[int, int]:
    """Warm the process up as the way needs (the desk signs in: argon2id's own 64 MiB is not
    the submission's), reset its peak, submit; returns (peak growth, peak) in bytes."""
    fields = {
        "title": f"Sáu mươi megabyte ảnh ({way} {n + 1})",
        "category": CATEGORY[0],
        "summary": "",
        "body": "<p>Mười ảnh.</p>",
        "author": "",
        "unit": "",
        "published_at": "",
    }
    jar = aiohttp.CookieJar(unsafe=True)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as session:
        await (await session.get(url + "/desk/")).read()  # templates and modules loaded
        if way == "desk":
            await sign_in(session, url, "vanphong")
            async with session.get(url + "/desk/bai-viet/moi") as response:
                found = CSRF.search(await response.text())
            assert found, "no CSRF field on the new-article form"
            rows: list[tuple[bytes | None, str, str]] = [(photo, "", "gallery")] * PHOTOS
            data: Any = article_form(found.group(1), fields, rows)
            target, headers, expected = url + "/desk/bai-viet/moi", {}, 303
        else:
            listing = url + "/api/v1/articles?limit=1"
            await (await session.get(listing, headers=stack.admin_headers)).read()
            article = {
                **{k: v for k, v in fields.items() if v},
                "images": [
                    {"part": f"p{i}", "caption": "", "role": "gallery"} for i in range(PHOTOS)
                ],
            }
            data = multipart(article, {f"p{i}": photo for i in range(PHOTOS)})
            target, headers, expected = url + "/api/v1/articles", stack.admin_headers, 202
        before = _reset_peak(pid)
        async with session.post(
            target, data=data, headers=headers, allow_redirects=False
        ) as response:
            if response.status != expected:
                raise RuntimeError(f"{way}: HTTP {response.status}: {await response.text()}")
        peak = _status_of(pid, "VmHWM")
    return peak - before, peak
