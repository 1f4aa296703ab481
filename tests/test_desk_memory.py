"""A 10-photo, 60 MB article costs the ingest process no more memory from the desk's form than
through the API: both stream every photo to disk. Measured on a real `bantin ingest` process
(its peak resident size, VmHWM), one fresh process per way in."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from shared.settings import Settings
from tests.conftest import ROOT, make_token
from tests.desk_helpers import CSRF, PASSWORD, article_form, make_account
from tests.test_api import bearer

PHOTOS = 10
PART_BYTES = 6 * 1024 * 1024
# Pages, buffers and allocator noise; a photo held whole would cost 6 MB, all of them 60 MB.
MARGIN = 12 * 1024 * 1024

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc"
)


def big_jpeg() -> bytes:
    """A valid JPEG of about 6 MB: noise compresses badly; padding after the end marker fills
    the rest (decoders stop at EOI)."""
    out = io.BytesIO()
    Image.effect_noise((1600, 1200), 80).convert("RGB").save(out, "JPEG", quality=95)
    data = out.getvalue()
    return data + b"\0" * max(0, PART_BYTES - len(data))


def peak(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match
    return int(match.group(1)) * 1024


def rss(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match
    return int(match.group(1)) * 1024


async def served(settings: Settings, send: Any, prepare: Any = None) -> int:
    """Start `bantin ingest`, let `prepare(url, session)` sign in (argon2id's verification
    itself uses 64 MiB, by design), then `send(url, session, prepared)` submit; returns the
    growth of the process's peak memory during the submission."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **settings.to_env()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bantin.cli", "ingest", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                try:
                    async with session.get(url + "/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            # Warm up: the first desk page and API call load templates and modules.
            await session.get(url + "/desk/")
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            prepared = await prepare(url, session) if prepare else None
            # Linux: writing 5 to clear_refs resets the peak (VmHWM) to the current size.
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
            before = rss(proc.pid)
            await send(url, session, prepared)
            return peak(proc.pid) - before
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


async def test_desk_upload_memory_matches_the_api(clean: Settings, admin: str) -> None:
    photo = big_jpeg()
    fields = {
        "title": "Sáu mươi megabyte ảnh",
        "category": "tin-hoat-dong",
        "summary": "",
        "body": "<p>Mười ảnh.</p>",
        "author": "",
        "unit": "",
        "published_at": "",
    }
    settings = clean
    await make_account(settings, "vanphong", "submitter")
    token = await make_token(settings, "submitter")

    async def by_api(url: str, session: Any, prepared: Any) -> None:
        article = {
            **{k: v for k, v in fields.items() if v},
            "images": [{"part": f"p{n}", "caption": "", "role": "gallery"} for n in range(PHOTOS)],
        }
        writer = aiohttp.MultipartWriter("form-data")
        part = writer.append_json(article)
        part.set_content_disposition("form-data", name="article")
        for n in range(PHOTOS):
            part = writer.append(io.BytesIO(photo), {"Content-Type": "image/jpeg"})
            part.set_content_disposition("form-data", name=f"p{n}", filename=f"p{n}.jpg")
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/api/v1/articles", data=writer, headers=bearer(token)) as response,
        ):
            assert response.status == 202, await response.text()

    async def sign_in(url: str, session: Any) -> str:
        page = await (await session.get(url + "/desk/")).text()
        found = CSRF.search(page)
        assert found
        await session.post(
            url + "/desk/dang-nhap",
            data={"csrf": found.group(1), "username": "vanphong", "password": PASSWORD},
        )
        page = await (await session.get(url + "/desk/bai-viet/moi")).text()
        found = CSRF.search(page)
        assert found
        return found.group(1)

    async def by_desk(url: str, session: Any, csrf: str) -> None:
        rows = [(photo, "", "gallery") for _ in range(PHOTOS)]
        async with session.post(
            url + "/desk/bai-viet/moi",
            data=article_form(csrf, fields, rows),
            allow_redirects=False,
        ) as response:
            assert response.status == 303, await response.text()

    await create_category_direct(settings)
    api_growth = await served(settings, by_api)
    desk_growth = await served(settings, by_desk, sign_in)
    print(
        f"peak memory growth: API {api_growth / 2**20:.1f} MiB, desk {desk_growth / 2**20:.1f} MiB"
    )
    assert desk_growth <= api_growth + MARGIN, (api_growth, desk_growth)
    assert desk_growth < PHOTOS * PART_BYTES / 2  # nowhere near the photos' size


async def create_category_direct(settings: Settings) -> None:
    import psycopg
    from psycopg.rows import dict_row

    from shared import articles

    database_url, _ = settings.require_backends()
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        await articles.create_category(conn, "tin-hoat-dong", "Tin hoạt động")
