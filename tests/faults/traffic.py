"""Traffic for the fault tests: submitters posting articles (every third with a photo) and
readers viewing pages, against a live stack, every answer checked as it comes.

What may happen while a dependency is away: a 503 with Retry-After. What may never happen: a
500 (or any other 5xx), a 503 without Retry-After, a request left hanging (HANG seconds), a
refused connection (the services themselves are never killed here).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bantin.bootstrap import demo_seed, text_only
from tests.photos import jpeg, multipart

HANG = 10.0  # seconds without an answer: a hang
CATEGORY = "tin-hoat-dong"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
ARTICLE = {k: v for k, v in text_only(demo_seed()["article"]).items() if k not in ("published_at",)}
PHOTO = jpeg(320, 240)
_numbers = itertools.count(1)


@dataclass
class Traffic:
    site: str
    api: str
    token: str
    accepted: dict[int, int] = field(default_factory=dict)  # article id -> photos sent
    titles: dict[int, str] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)  # "POST 202", "GET 503"...
    wrong: list[str] = field(default_factory=list)  # what must never happen
    views: list[float] = field(default_factory=list)  # when each counted page view answered
    slowest: float = 0.0
    slowest_request: str = ""
    pages: list[str] = field(default_factory=lambda: ["/", f"/{CATEGORY}/"])
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    phase: str = "before"  # what is happening to the stack (counted with each answer)
    interval: float = 0.2  # seconds each submitter waits between two submissions

    async def run(self, submitters: int = 2, readers: int = 3) -> None:
        timeout = aiohttp.ClientTimeout(total=HANG)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(
                *(self._submit(session) for _ in range(submitters)),
                *(self._read(session, n) for n in range(readers)),
            )

    async def _call(
        self, session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
    ) -> tuple[int, bytes] | None:
        started = time.monotonic()
        try:
            async with session.request(method, url, **kwargs) as response:
                body = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            self.wrong.append(f"{self.phase}: {method} {url}: no answer in {HANG:.0f} s")
            return None
        except aiohttp.ClientError as err:
            self.wrong.append(f"{self.phase}: {method} {url}: {type(err).__name__}: {err}")
            return None
        took = time.monotonic() - started
        if took > self.slowest:
            self.slowest, self.slowest_request = took, f"{self.phase}: {method} {url} {status}"
        self.statuses[f"{self.phase}: {method} {status}"] += 1
        if status >= 500 and not (status == 503 and retry_after):
            self.wrong.append(
                f"{self.phase}: {method} {url}: {status} after {took:.1f} s: {body[:300]!r}"
            )
        return status, body

    async def _submit(self, session: aiohttp.ClientSession) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        while not self.stop.is_set():
            n = next(_numbers)
            title = f"Bài kiểm tra sự cố số {n}"
            article = {**ARTICLE, "title": title}
            if n % 3 == 0:
                article["images"] = [{"part": "a", "caption": f"Ảnh {n}", "role": "gallery"}]
                answer = await self._call(
                    session,
                    "POST",
                    self.api + "/api/v1/articles",
                    data=multipart(article, {"a": PHOTO}),
                    headers=headers,
                )
                photos = 1
            else:
                answer = await self._call(
                    session, "POST", self.api + "/api/v1/articles", json=article, headers=headers
                )
                photos = 0
            if answer is not None and answer[0] == 202:
                accepted = _json(answer[1])
                self.accepted[accepted["id"]] = photos
                self.titles[accepted["id"]] = title
                self.pages.append(accepted["links"]["page"].removeprefix(self.site))
            await asyncio.sleep(self.interval)

    async def _read(self, session: aiohttp.ClientSession, reader: int) -> None:
        headers = {"User-Agent": f"{BROWSER} reader-{reader}"}
        turn = 0
        while not self.stop.is_set():
            turn += 1
            path = self.pages[(turn * 7 + reader) % len(self.pages)]
            answer = await self._call(session, "GET", self.site + path, headers=headers)
            if answer is not None and answer[0] == 200:
                self.views.append(time.monotonic())
            await asyncio.sleep(0.05)


def _json(body: bytes) -> Any:
    import json

    return json.loads(body)
