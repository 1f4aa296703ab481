"""Answers serialized once and sent many times.

A cached page is answered thousands of times a second with the same status, the same headers
and the same body until its statistics change (once a second at most). aiohttp's Response
builds, checks and serializes its headers on every answer; that and the Python around it were
about a fifth of what answering a cached page cost a publisher (py-spy under load: the
response's prepare, __init__ and write_eof, the socket write set aside). A PreparedResponse
is sent from bytes made once, when the page is prepared: the status line and the fixed header
lines (`fixed_head`, Content-Length included) and the body. Each answer adds only what differs
per request, as aiohttp would: Date, Server, Connection where the protocol needs it, and the
headers set on the response before it is sent (the request id, a new reader's cookie).

It writes exactly what aiohttp's Response writes for the same answer (the tests compare them
on the wire, so that an aiohttp upgrade that changes either shows), in one write. It knows
aiohttp's request in one place: the stream writer it answers through (`_payload_writer`, as
StreamResponse itself does) and the response-prepare hook, run as StreamResponse runs it.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11

_STATUS_11 = b"HTTP/1.1 200 OK\r\n"
_SERVER = f"Server: {SERVER_SOFTWARE}\r\n".encode()
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CLOSE = b"Connection: close\r\n"
_date: tuple[str, bytes] = ("", b"")  # aiohttp's date string of this second, and its line


def fixed_head(headers: Mapping[str, str], body: bytes) -> bytes:
    """The header lines of a 200 answering `body` that every request gets (Content-Length
    added), serialized as aiohttp does."""
    return b"".join(
        [
            *(_line(name, value) for name, value in headers.items()),
            _line("Content-Length", len(body)),
        ]
    )


class PreparedResponse(web.StreamResponse):
    """A 200 of `head` (from fixed_head) and `body`. Headers set on it before it is sent are
    added to the fixed ones. No compression nor chunking (such answers use neither); a HEAD
    request gets the head only."""

    def __init__(self, head: bytes, body: bytes) -> None:
        super().__init__()
        self._head = head
        self._data = body
        self._wire: list[bytes] = []

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        if self._payload_writer is not None:
            return self._payload_writer
        # What StreamResponse._start does, with the fixed part of the head already made.
        self._req = request
        writer = self._payload_writer = request._payload_writer
        keep_alive = self._keep_alive
        if keep_alive is None:
            keep_alive = self._keep_alive = request.keep_alive
        await request._prepare_hook(self)
        version = request.version
        status = (
            _STATUS_11
            if version == HttpVersion11
            else f"HTTP/{version[0]}.{version[1]} 200 OK\r\n".encode()
        )
        wire = [status, self._head, _date_line(), _SERVER]
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


def _line(name: str, value: object) -> bytes:
    text = f"{name}: {value}\r\n"
    if "\r" in text[:-2] or "\n" in text[:-2]:
        # As aiohttp's serializer: a header must not end early and start another.
        raise ValueError("Newline or carriage return character detected in HTTP header")
    return text.encode()


def _date_line() -> bytes:
    global _date
    now = rfc822_formatted_time()  # the same string all second
    if now is not _date[0]:
        _date = (now, f"Date: {now}\r\n".encode())
    return _date[1]
