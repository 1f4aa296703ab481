"""Answers serialized once and sent many times.

A cached page is answered thousands of times a second with the same status, the same headers
and the same body until its statistics change (once a second at most). aiohttp's Response
builds, checks and serializes its headers on every answer; that and the Python around it were
about a fifth of what a bare aiohttp handler spends on a request (py-spy under load: the
response's prepare, __init__ and write_eof, the socket write set aside). A PreparedResponse
is sent from bytes made once, when the page is prepared: the status line and the fixed header
lines (`fixed_head`, Content-Length included) and the body. Each answer adds only what differs
per request, as aiohttp would: Date, Server, Connection where the protocol needs it, and the
headers set on the response before it is sent (the request id, a new reader's cookie).

It writes what aiohttp's Response writes for the same answer, in one write: the same status
line, header lines and body, the fixed header lines first (the tests compare them on the wire,
so that an aiohttp upgrade that changes either shows). What it does not do, it refuses rather
than skips: cookies set through set_cookie(), compression, chunking, a header of the fixed
head set again.

Why this is not on aiohttp's public API alone (issue 18): a public-API answer is a Response
built, checked and serialized per request, which is what this module exists to avoid: a
cached page would cost what it cost before (about half again a bare handler's answer, where
it costs 1.1 to 1.16 times with this). So this is the one shim, kept here and nowhere else.
It answers through the request's public stream writer (`request.writer`) and relies on three
private things, as StreamResponse's own subclasses do: StreamResponse's state fields
(`_payload_writer`, `_eof_sent`, `_keep_alive`, `_req`, `_body_length`, and the `_cookies`,
`_compression`, `_chunked`, `_headers` it refuses or adds), the request's response-prepare
hook (`_prepare_hook`, run as StreamResponse._start runs it: the application's
on_response_prepare signals), and the order in which StreamResponse.prepare and write_eof use
them. tests/test_prepared.py pins the source of each aiohttp function this mirrors and fails,
naming it, on an aiohttp upgrade that changes one; then re-read it, adapt this, update the pin.
"""

from __future__ import annotations

import functools
import gzip
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import brotli
from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11

_STATUS_11 = b"HTTP/1.1 200 OK\r\n"
_SERVER = f"Server: {SERVER_SOFTWARE}\r\n".encode()
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CLOSE = b"Connection: close\r\n"
_date: tuple[str, bytes] = ("", b"")  # aiohttp's date string of this second, and its line
# Headers set on prepared answers, never in a fixed head: not looked up there.
_ADDED = frozenset({"X-Request-ID", "Set-Cookie"})
# What aiohttp refuses in a header (RFC 9110 section 5.5): control characters but the tab.
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


# Content codings of prepared answers, in order of preference (smaller first).
ENCODINGS = ("br", "gzip")


def compressed(body: bytes) -> dict[str, bytes]:
    """`body` in each of ENCODINGS: made once per prepared body, never per request. A few
    milliseconds of CPU for a page: call it in a thread. (Brotli's quality 5 and gzip's level 6
    give nearly the smallest output at a fiftieth of the highest settings' cost.)"""
    return {
        "br": brotli.compress(body, quality=5),
        "gzip": gzip.compress(body, compresslevel=6, mtime=0),
    }


@functools.lru_cache(maxsize=512)
def accepted_encoding(accept_encoding: str) -> str:
    """The one of ENCODINGS that an Accept-Encoding value prefers (RFC 9110 section 12.5.3:
    q-values, "*", "q=0" refuses), or "" for the identity. Browsers send a handful of
    distinct values: after the first, each costs a dictionary lookup."""
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        name, _, params = item.partition(";")
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[name.strip()] = weight
    star = weights.get("*", 0.0)
    chosen, best = "", 0.0
    for name in ENCODINGS:
        weight = weights.get(name, star)
        if weight > best:
            chosen, best = name, weight
    return chosen


def not_modified(request: web.BaseRequest, etag: str, last_modified: str | None = None) -> bool:
    """Whether a 304 answers `request` for a representation of `etag` (and `last_modified`,
    an HTTP date): RFC 9110 section 13.1.2, weak comparison, "*" matches; If-Modified-Since
    only when no If-None-Match was sent (section 13.2.2). Parsed by aiohttp."""
    tags = request.if_none_match
    if tags is not None:
        value = etag.removeprefix("W/")[1:-1]
        return any(tag.value == value or tag.value == "*" for tag in tags)
    if last_modified is None:
        return False
    since = request.if_modified_since
    return since is not None and parsedate_to_datetime(last_modified) <= since


@dataclass(frozen=True, slots=True)
class Head:
    """The header lines every answer of a body gets, serialized, and their names (lowercase,
    with those the response adds itself: a header of these set again would be sent twice)."""

    lines: bytes
    names: frozenset[str]


def fixed_head(headers: Mapping[str, str], body: bytes) -> Head:
    """The head of a 200 answering `body` (Content-Length added), serialized as aiohttp does."""
    fixed = {**headers, "Content-Length": str(len(body))}
    lines = b"".join(_line(name, value) for name, value in fixed.items())
    return Head(lines, frozenset(name.lower() for name in [*fixed, "Date", "Server"]))


class PreparedResponse(web.StreamResponse):
    """A 200 of `head` (from fixed_head) and `body`. Headers set on it before it is sent are
    added to the fixed ones. No compression nor chunking (such answers use neither); a HEAD
    request gets the head only."""

    def __init__(self, head: Head, body: bytes) -> None:
        super().__init__()
        self._head = head
        self._data = body
        self._wire: list[bytes] = []

    def _refuse_what_it_cannot_send(self) -> None:
        if self._cookies or self._compression or self._chunked:
            raise RuntimeError("a prepared answer sends no set_cookie(), compression or chunks")
        names = self._head.names
        for name in self._headers:
            if name not in _ADDED and name.lower() in names:
                raise RuntimeError(f"{name} is in the prepared head already")

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        if self._payload_writer is not None:
            return self._payload_writer
        # What StreamResponse._start does, with the fixed part of the head already made.
        self._req = request
        writer = self._payload_writer = request.writer
        keep_alive = self._keep_alive
        if keep_alive is None:
            keep_alive = self._keep_alive = request.keep_alive
        await request._prepare_hook(self)
        if self._cookies or self._compression or self._chunked or self._headers:
            self._refuse_what_it_cannot_send()  # (the headers: only if they clash)
        version = request.version
        status = (
            _STATUS_11
            if version == HttpVersion11
            else f"HTTP/{version[0]}.{version[1]} 200 OK\r\n".encode()
        )
        wire = [status, self._head.lines, _date_line(), _SERVER]
        headers = self._headers
        if headers:
            wire += [_line(name, value) for name, value in headers.items()]
        if hdrs.CONNECTION not in headers:
            if keep_alive:
                if version == HttpVersion10:
                    wire.append(_KEEP_ALIVE)
            elif version == HttpVersion11:
                wire.append(_CLOSE)
        wire.append(b"\r\n")
        if request.method != hdrs.METH_HEAD:
            wire.append(self._data)
        self._wire = wire
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof_sent:
            return
        assert not data, "a prepared answer has its body"
        writer = self._payload_writer
        assert writer is not None, "Response has not been started"
        await writer.write_eof(b"".join(self._wire))  # one write, as aiohttp's coalesced one
        self._eof_sent = True
        self._req = None
        self._body_length = writer.output_size
        self._payload_writer = None
        self._wire = []


def _line(name: str, value: str) -> bytes:
    text = name + ": " + value  # (not an f-string: a name is often an istr, slower to format)
    if not text.isprintable() and _FORBIDDEN.search(text) is not None:
        # As aiohttp's serializer: no header may end early and start another.
        raise ValueError("Forbidden control character detected in headers")
    return (text + "\r\n").encode()


def _date_line() -> bytes:
    global _date
    now = rfc822_formatted_time()  # the same string all second
    if now is not _date[0]:
        _date = (now, f"Date: {now}\r\n".encode())
    return _date[1]
