"""What a fresh installation needs before its first reader: the admin token from the
environment, and on first start the demo category, a demo submitter token, a demo editor account
for the desk and the seed article.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared import accounts, articles, tokens
from shared.settings import Settings

log = logging.getLogger(__name__)

DEMO_KEY = "demo"
DEMO_EDITOR = "bientap"


@dataclass(frozen=True, slots=True)
class Secrets:
    demo_token: str | None = None
    demo_editor: tuple[str, str] | None = None  # (username, password) for the desk


def demo_seed() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (resources.files("bantin") / "demo" / "seed-article.json").read_text("utf-8")
    )
    return data


def text_only(article: dict[str, Any]) -> dict[str, Any]:
    """The seed article without its photos (for a JSON request, which carries none)."""
    body = re.sub(r"<figure>.*?</figure>\s*", "", article["body"], flags=re.S)
    return {**article, "body": body, "images": []}


def prepare(settings: Settings, *, demo: bool) -> Secrets:
    return asyncio.run(_prepare(settings, demo))


async def _prepare(settings: Settings, demo: bool) -> Secrets:
    assert settings.database_url
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        if settings.admin_token:
            await tokens.create(conn, "admin (BANTIN_ADMIN_TOKEN)", "admin", settings.admin_token)
        if not demo:
            return Secrets()
        cur = await conn.execute(
            "INSERT INTO site_meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (DEMO_KEY, Jsonb({"loaded_at": time.time()})),
        )
        if cur.rowcount == 0:
            return Secrets()  # not the first start
        seed = demo_seed()
        try:
            await articles.create_category(conn, seed["category"]["slug"], seed["category"]["name"])
        except articles.Conflict:
            pass
        password = secrets.token_urlsafe(12)
        await accounts.create(conn, DEMO_EDITOR, password, "editor", "Biên tập viên (demo)")
        return Secrets(
            demo_token=await tokens.create(conn, "demo submitter", "submitter"),
            demo_editor=(DEMO_EDITOR, password),
        )


def demo_photos() -> dict[str, bytes]:
    folder = resources.files("bantin") / "demo" / "photos"
    return {
        image["part"]: (folder / f"{image['part']}.jpg").read_bytes()
        for image in demo_seed()["article"]["images"]
    }


def post_demo(settings: Settings, api_url: str, token: str, timeout: float = 60.0) -> None:
    """Submit the seed article with its photos, the way any submitter would (multipart), and
    wait until it is live."""
    asyncio.run(_post_demo(api_url, token, timeout))


async def _post_demo(api_url: str, token: str, wait_seconds: float) -> None:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append_json(demo_seed()["article"])
    part.set_content_disposition("form-data", name="article")
    for name, data in demo_photos().items():
        part = writer.append(data, {"Content-Type": "image/jpeg"})
        part.set_content_disposition("form-data", name=name, filename=f"{name}.jpg")
    client_timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=client_timeout) as session:
        async with session.post(api_url + "/api/v1/articles", data=writer) as response:
            answer = await response.json()
            if response.status != 202:
                log.warning("the demo article was refused: %s", answer)
                return
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            async with session.get(answer["links"]["self"]) as response:
                status = (await response.json())["status"]
            if status in ("published", "scheduled", "failed"):
                if status == "failed":
                    log.warning("the demo article failed to publish")
                return
            await asyncio.sleep(0.2)
    log.warning("the demo article was not published within %.0f s", wait_seconds)
