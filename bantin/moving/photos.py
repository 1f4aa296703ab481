"""Photos of an old portal: fetched from its URLs (or from a copy: `--media-from`), checked like
any upload (format from the bytes, pixel count from the header), kept in the media store.

Every fetch has a timeout and a size cap; a photo that hangs, answers 404 or is not an image is
a failure of that photo, with the reason, never of the import.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import quote, unquote, urlsplit

import aiohttp

from shared.photos.probe import HEAD_BYTES, ImageRefused, accept, probe
from shared.photos.store import media_store
from shared.settings import Settings

CHUNK = 256 * 1024
CONCURRENCY = 8
TIMEOUT = 30.0  # seconds for one photo, all in
UPLOADS = "/wp-content/uploads/"


@dataclass(frozen=True, slots=True)
class Stored:
    """A photo in the media store, with what the article's row needs."""

    sha256: str
    format: str
    bytes: int
    width: int
    height: int


class PhotoFailed(Exception):
    """Why a photo could not come along, as a sentence."""


class Fetcher:
    """Fetches each URL once per run, a few at a time."""

    def __init__(
        self,
        settings: Settings,
        media_from: str | None = None,
        *,
        timeout: float = TIMEOUT,
    ) -> None:
        self.store = media_store(settings)
        self.max_bytes = settings.max_photo_bytes
        self.max_pixels = settings.max_pixels
        self.media_from = media_from
        self.timeout = timeout
        self._local = (
            Path(media_from).expanduser().resolve()
            if media_from and not media_from.startswith(("http://", "https://"))
            else None
        )
        self._session: aiohttp.ClientSession | None = None
        self._gate = asyncio.Semaphore(CONCURRENCY)
        self._done: dict[str, Stored | PhotoFailed] = {}

    async def __aenter__(self) -> Fetcher:
        await asyncio.to_thread(self.store.ensure)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=10),
            headers={"User-Agent": "bantin-import"},
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch_all(self, urls: set[str]) -> dict[str, Stored | PhotoFailed]:
        todo = [u for u in urls if u not in self._done]
        results = await asyncio.gather(*(self._one(u) for u in todo))
        self._done.update(zip(todo, results, strict=True))
        return {u: self._done[u] for u in urls}

    async def _one(self, url: str) -> Stored | PhotoFailed:
        async with self._gate:
            try:
                return await self._get(url)
            except PhotoFailed as err:
                return err

    def locate(self, url: str) -> str | Path:
        """Where the photo of `url` is read from: the URL itself, or its place under
        `--media-from` (another base URL, or a local copy of wp-content/uploads)."""
        if not self.media_from:
            return url
        path = urlsplit(url).path
        relative = path.split(UPLOADS, 1)[1] if UPLOADS in path else path.lstrip("/")
        if self._local is None:
            return self.media_from.rstrip("/") + "/" + quote(unquote(relative))
        target = (self._local / unquote(relative)).resolve()
        if not target.is_relative_to(self._local):
            raise PhotoFailed(f"{url}: outside {self._local}")
        return target

    async def _get(self, url: str) -> Stored:
        where = self.locate(url)
        temp = self.store.new_temp()
        out = await asyncio.to_thread(temp.open, "xb")
        digest = hashlib.sha256()
        size = 0
        head = b""
        try:
            async for chunk in self._chunks(url, where):
                size += len(chunk)
                if size > self.max_bytes:
                    raise PhotoFailed(f"{url}: larger than {self.max_bytes} bytes")
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                    if len(head) == HEAD_BYTES:  # not an image: stop reading now
                        self._accept(url, head)
                digest.update(chunk)
                await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(out.close)
            self._accept(url, head)
            try:
                info = await asyncio.to_thread(probe, temp, max_pixels=self.max_pixels)
            except ImageRefused as err:
                raise PhotoFailed(f"{url}: {err}") from err
            sha = digest.hexdigest()
            await asyncio.to_thread(self.store.adopt_original, temp, sha)
        except BaseException:
            out.close()
            temp.unlink(missing_ok=True)
            raise
        return Stored(sha, info.format, size, info.upright_width, info.upright_height)

    @staticmethod
    def _accept(url: str, head: bytes) -> None:
        try:
            accept(head)
        except ImageRefused as err:
            raise PhotoFailed(f"{url}: {err}") from err

    async def _chunks(self, url: str, where: str | Path):  # type: ignore[no-untyped-def]
        if isinstance(where, Path):
            try:
                src: IO[bytes] = await asyncio.to_thread(where.open, "rb")
            except OSError as err:
                raise PhotoFailed(f"{url}: {where}: {err.strerror}") from err
            try:
                while chunk := await asyncio.to_thread(src.read, CHUNK):
                    yield chunk
            finally:
                src.close()
            return
        assert self._session is not None
        try:
            async with self._session.get(where) as response:
                if response.status != 200:
                    raise PhotoFailed(f"{url}: HTTP {response.status} from {where}")
                async for chunk in response.content.iter_chunked(CHUNK):
                    yield chunk
        except TimeoutError as err:
            raise PhotoFailed(f"{url}: no complete answer within {self.timeout:g} s") from err
        except aiohttp.ClientError as err:
            raise PhotoFailed(f"{url}: {err or type(err).__name__}") from err
