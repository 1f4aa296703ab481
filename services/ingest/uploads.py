"""Multipart article submissions: the JSON part, and photos streamed to the media store.

A photo is never held in memory: each chunk is hashed and written to a temporary file in a
thread, so the event loop never waits on the disk. The format is decided by the bytes (magic
numbers), never by the client's Content-Type or file name, and the pixel count is read from the
header before anything is decoded. A refused request leaves no file behind: temporary files are
only moved into the store once the whole request has been accepted.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from shared.photos.probe import (
    HEAD_BYTES,
    ImageRefused,
    NotAccepted,
    Probe,
    TooManyPixels,
    accept,
    probe,
)
from shared.photos.store import MediaStore
from shared.problems import Problem, loads
from shared.settings import Settings

# What aiohttp raises on a broken multipart body (no boundary, bad part headers, ...).
BROKEN = (AssertionError, ValueError, KeyError, HttpProcessingError)
CHUNK = 256 * 1024
PART_NAME_LIMIT = 100


@dataclass(slots=True)
class Photo:
    part: str
    temp: Path
    sha256: str
    bytes: int
    info: Probe


@dataclass(slots=True)
class Submission:
    article: Any = None
    article_bytes: bytes = b""
    photos: dict[str, Photo] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """What makes two requests "the same" for Idempotency-Key: the JSON and the photos'
        hashes, whatever the multipart boundaries and part order were."""
        digest = hashlib.sha256(self.article_bytes)
        for name in sorted(self.photos):
            digest.update(f"\0{name}\0{self.photos[name].sha256}".encode())
        return digest.hexdigest()

    def discard(self) -> None:
        _discard(self.photos)


class _Sink:
    """Hashes and writes chunks; runs in a worker thread (hashlib releases the GIL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hash = hashlib.sha256()
        self.file: IO[bytes] = path.open("xb")

    def write(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        self.file.write(chunk)

    def close(self) -> None:
        self.file.close()


async def _parts(request: web.Request, settings: Settings) -> AsyncIterator[BodyPartReader]:
    """The body's parts, one at a time (each must be read before the next is asked for); a
    body too large or broken is refused with a problem that says so."""
    if request.content_length and request.content_length > settings.max_request_bytes:
        raise _too_large(
            f"The request is {request.content_length} bytes; at most"
            f" {settings.max_request_bytes} are accepted."
        )
    try:
        reader = await request.multipart()
    except BROKEN as err:
        raise _malformed(
            f"The multipart/form-data body cannot be read: {err or 'no boundary'}."
        ) from err
    while True:
        try:
            part = await reader.next()
        except BROKEN as err:
            raise _malformed(f"The multipart body is broken: {err}.") from err
        if part is None:
            return
        if not isinstance(part, BodyPartReader):
            raise Problem(415, "Unsupported media type", "Nested multipart is not accepted.")
        yield part


async def read_multipart(request: web.Request, settings: Settings, store: MediaStore) -> Submission:
    submission = Submission()
    total = 0
    try:
        async for part in _parts(request, settings):
            name = part.name or ""
            if name == "article":
                submission.article_bytes = await _read_json_part(part, settings.max_json_bytes)
                total += len(submission.article_bytes)
                submission.article = loads(submission.article_bytes, "The 'article' part")
                continue
            _check_part_name(name, submission, settings)
            photo = await _stream_photo(
                part, name, settings, store, settings.max_request_bytes - total
            )
            submission.photos[name] = photo
            total += photo.bytes
        if submission.article is None:
            raise Problem(
                422,
                "Invalid request",
                "The multipart request needs a part named 'article' with the article's JSON.",
                kind="validation",
                errors=[{"field": "article", "pointer": "/article", "message": "is required"}],
            )
    except BaseException:
        submission.discard()
        raise
    return submission


def _check_part_name(name: str, submission: Submission, settings: Settings) -> None:
    if not name or len(name) > PART_NAME_LIMIT:
        raise Problem(
            422,
            "Invalid request",
            "Every photo part needs a name (at most"
            f" {PART_NAME_LIMIT} characters) that the article's images list names.",
            kind="validation",
        )
    if name in submission.photos:
        raise Problem(
            422, "Invalid request", f"The part name {name!r} is used twice.", kind="validation"
        )
    _room_for_photo(submission.photos, settings)


async def _read_json_part(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > limit:
            raise _too_large(f"The 'article' part is larger than {limit} bytes.")
    return bytes(data)


async def _stream_photo(
    part: BodyPartReader, name: str, settings: Settings, store: MediaStore, budget: int
) -> Photo:
    first = await part.read_chunk(CHUNK)
    try:
        accept(first[:HEAD_BYTES])
    except NotAccepted as err:
        raise Problem(
            415,
            "Unsupported media type",
            f"Part {name!r}: {err} (decided by its bytes, not its name or Content-Type).",
            kind="unsupported-image",
            part=name,
        ) from err
    limit = min(settings.max_photo_bytes, budget)
    sink = await asyncio.to_thread(_Sink, store.new_temp())
    size = 0
    try:
        chunk = first
        while chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(
                    f"Part {name!r} is larger than {settings.max_photo_bytes} bytes"
                    if limit == settings.max_photo_bytes
                    else f"The request is larger than {settings.max_request_bytes} bytes.",
                    part=name,
                )
            await asyncio.to_thread(sink.write, chunk)
            chunk = await part.read_chunk(CHUNK)
        await asyncio.to_thread(sink.close)
        try:
            info = await asyncio.to_thread(probe, sink.path, max_pixels=settings.max_pixels)
        except TooManyPixels as err:
            raise _too_large(f"Part {name!r}: {err}", part=name) from err
        except ImageRefused as err:
            # The reader's own words (a parser's "unpack_from requires a buffer...") help no
            # submitter: say what the file is not, and what to do.
            what = str(err).partition(":")[0]
            raise Problem(
                422,
                "Undecodable image",
                f"Part {name!r}: {what}; it may be cut short or damaged. Save or export the"
                " photo again (JPEG or PNG) and send it again.",
                kind="undecodable-image",
                part=name,
            ) from err
    except BaseException:
        sink.file.close()
        sink.path.unlink(missing_ok=True)
        raise
    return Photo(part=name, temp=sink.path, sha256=sink.hash.hexdigest(), bytes=size, info=info)


def _too_large(detail: str, **extra: Any) -> Problem:
    return Problem(413, "Content too large", detail, kind="too-large", **extra)


def _malformed(detail: str) -> Problem:
    return Problem(400, "Malformed multipart", detail, kind="malformed-multipart")


def _room_for_photo(photos: dict[str, Photo], settings: Settings) -> None:
    if len(photos) >= settings.max_photos:
        raise _too_large(f"At most {settings.max_photos} photos per article.")


def _discard(photos: dict[str, Photo]) -> None:
    for photo in photos.values():
        photo.temp.unlink(missing_ok=True)


# --- the desk's HTML form: the same streaming, for a form's file fields --------------------------


@dataclass(slots=True)
class FormPart:
    """One field of a multipart/form-data form, in the order the browser sent it."""

    name: str
    value: str = ""  # a text field's value
    file: bool = False  # a file field (empty when nothing was chosen)
    photo: Photo | None = None  # the photo it carried, streamed to a temporary file
    refused: Problem | None = None  # why its photo was refused


@dataclass(slots=True)
class Form:
    parts: list[FormPart] = field(default_factory=list)

    def photos(self) -> dict[str, Photo]:
        return {p.photo.part: p.photo for p in self.parts if p.photo is not None}

    def discard(self) -> None:
        _discard(self.photos())


async def read_form(
    request: web.Request,
    settings: Settings,
    store: MediaStore,
    *,
    files: str,
    guard: Any,
) -> Form:
    """Read a form whose file fields named `files` carry photos. Each photo streams to the
    store's temporary folder exactly as an API part does (never whole in memory). `guard(form)`
    is called before the first photo is written (the desk checks its CSRF token there), so a
    forged request never gets a byte onto the disk. A refused photo does not end the request:
    it is noted on its field, later photos are read past, and the text is kept, so the form can
    come back filled. Photos are named anh-1, anh-2, ... by their field's position."""
    form = Form()
    total, text, guarded, refused, n = 0, 0, False, False, 0
    try:
        async for part in _parts(request, settings):
            name = part.name or ""
            if name != files:  # text: at most max_json_bytes of it in all
                value = await _read_json_part(part, settings.max_json_bytes - text)
                text += len(value)
                total += len(value)
                form.parts.append(FormPart(name, value.decode("utf-8", "replace")))
                continue
            n += 1
            entry = FormPart(name, file=True)
            form.parts.append(entry)
            if not part.filename or refused:
                total += await _drain(part, settings.max_request_bytes - total)
                continue
            if not guarded:
                guard(form)
                guarded = True
            _room_for_photo(form.photos(), settings)
            try:
                entry.photo = await _stream_photo(
                    part, f"anh-{n}", settings, store, settings.max_request_bytes - total
                )
                total += entry.photo.bytes
            except Problem as problem:
                if problem.status == 413 and "part" not in problem.extra:
                    raise  # the whole request is too large
                entry.refused, refused = problem, True
                total += await _drain(part, settings.max_request_bytes - total)
    except BaseException:
        form.discard()
        raise
    return form


async def _drain(part: BodyPartReader, budget: int) -> int:
    size = 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        if size > budget:
            raise _too_large("The request is too large.")
    return size
