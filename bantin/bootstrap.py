"""What a fresh installation needs before its first reader: the admin token from the
environment, and on first start the demo category, a demo submitter token and the seed article.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.request
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared import articles, tokens
from shared.settings import Settings

log = logging.getLogger(__name__)

DEMO_KEY = "demo"


@dataclass(frozen=True, slots=True)
class Secrets:
    demo_token: str | None = None


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
        return Secrets(demo_token=await tokens.create(conn, "demo submitter", "submitter"))


def post_demo(settings: Settings, api_url: str, token: str, timeout: float = 60.0) -> None:
    """Submit the seed article the way any submitter would, and wait until it is live."""
    body = json.dumps(text_only(demo_seed()["article"])).encode()
    request = urllib.request.Request(
        api_url + "/api/v1/articles",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check = urllib.request.Request(
            answer["links"]["self"], headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(check, timeout=10) as response:
            if json.load(response)["status"] in ("published", "scheduled", "failed"):
                return
        time.sleep(0.2)
    log.warning("the demo article was not published within %.0f s", timeout)
