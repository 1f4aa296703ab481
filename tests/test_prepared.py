"""A prepared answer is, on the wire, what aiohttp's Response writes for the same answer: the
same status line, header lines (in another order: the fixed ones come first) and body, for
every HTTP version and connection handling, with headers added per request, and for HEAD. If
an aiohttp upgrade changes either, this says so."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web, web_protocol, web_request, web_response
from aiohttp.test_utils import make_mocked_request

from shared.prepared import PreparedResponse, fixed_head

BODY = "<!doctype html><p>Trang đã lưu sẵn</p>\n".encode() * 50
HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-cache",
    "ETag": 'W/"1-a"',
}
EXTRA = {"X-Request-ID": "0123456789abcdef", "Set-Cookie": "bantin_vid=abc.20260101.0f; Path=/"}


@pytest.fixture
async def server(aiohttp_server: Any) -> Any:
    head = fixed_head(HEADERS, BODY)

    async def prepared(request: web.Request) -> web.StreamResponse:
        response = PreparedResponse(head, BODY)
        if "extra" in request.query:
            response.headers.update(EXTRA)
        return response

    async def plain(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=BODY, headers=HEADERS)
        if "extra" in request.query:
            response.headers.update(EXTRA)
        return response

    app = web.Application()
    app.router.add_get("/prepared", prepared)
    app.router.add_get("/plain", plain)
    return await aiohttp_server(app)


async def exchange(server: Any, request: bytes) -> bytes:
    """Send a raw request, read one answer, then whether the server closed the connection."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(re.search(rb"(?i)\r\ncontent-length: (\d+)", head)[1])  # type: ignore[index]
        body = b"" if request.startswith(b"HEAD") else await reader.readexactly(length)
        try:
            after = await asyncio.wait_for(reader.read(1), 0.3)
            return head + body + (b"<closed>" if after == b"" else b"<more: " + after + b">")
        except TimeoutError:
            return head + body + b"<open>"
    finally:
        writer.close()


def parts(answer: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(status line, header lines sorted, the rest), the Date set aside (it may turn)."""
    head, _, rest = answer.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    return status, sorted(line for line in lines if not line.startswith(b"Date: ")), rest


@pytest.mark.parametrize(
    "line, headers",
    [
        ("GET {} HTTP/1.1", ""),
        ("GET {} HTTP/1.1", "Connection: close\r\n"),
        ("GET {} HTTP/1.0", ""),
        ("GET {} HTTP/1.0", "Connection: keep-alive\r\n"),
        ("GET {}?extra=1 HTTP/1.1", ""),
        ("HEAD {} HTTP/1.1", ""),
    ],
)
async def test_a_prepared_answer_is_aiohttps_answer_on_the_wire(
    server: Any, line: str, headers: str
) -> None:
    answers = []
    for path in ("/prepared", "/plain"):
        request = f"{line.format(path)}\r\nHost: x\r\n{headers}\r\n".encode()
        answers.append(await exchange(server, request))
    prepared, plain = answers
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT\r\n", prepared)
    assert parts(prepared) == parts(plain)
    status, lines, rest = parts(prepared)
    assert status == (b"HTTP/1.0 200 OK" if "HTTP/1.0" in line else b"HTTP/1.1 200 OK")
    assert rest.startswith(BODY) if line.startswith("GET") else BODY not in rest
    assert (b"Set-Cookie: " + EXTRA["Set-Cookie"].encode() in lines) == ("extra" in line)
    kept = ("HTTP/1.1" in line and "close" not in headers) or "keep-alive" in headers
    assert rest.endswith(b"<open>" if kept else b"<closed>")


async def test_a_header_that_would_start_another_is_refused() -> None:
    with pytest.raises(ValueError, match="control character"):
        fixed_head({"X-Bad": "a\r\nSet-Cookie: stolen=1"}, BODY)
    response = PreparedResponse(fixed_head(HEADERS, BODY), BODY)
    response.headers["X-Request-ID"] = "abc\x01def"
    with pytest.raises(ValueError, match="control character"):
        await response.prepare(make_mocked_request("GET", "/"))


@pytest.mark.parametrize(
    "change",
    [
        lambda response: response.set_cookie("a", "b"),
        lambda response: response.enable_compression(),
        lambda response: response.enable_chunked_encoding(),
        lambda response: response.headers.__setitem__("etag", 'W/"2-b"'),
        lambda response: response.headers.__setitem__("Date", "yesterday"),
    ],
)
async def test_what_a_prepared_answer_cannot_send_is_refused_not_skipped(change: Any) -> None:
    response = PreparedResponse(fixed_head(HEADERS, BODY), BODY)
    change(response)
    with pytest.raises(RuntimeError):
        await response.prepare(make_mocked_request("GET", "/"))


# What shared/prepared.py (and the front door) rely on in aiohttp beyond its public API, as
# aiohttp 3.14.5 has it: the source of each function it mirrors or whose state it keeps.
RELIED_ON = {
    "StreamResponse.prepare": "9c6c49cc07222eef",
    "StreamResponse._start": "7e03ebd82e7f9f98",
    "StreamResponse.write_eof": "12b174e4cfe3bb7e",
    "StreamResponse.prepared": "fb620c1613e5cc98",
    "StreamResponse.keep_alive": "9d23538bbd9df0dd",
    "StreamResponse.body_length": "f14cee08fc8d4994",
    "Request._prepare_hook": "7a57630528793e4b",
    "BaseRequest.writer": "55fd8ca4bc64874c",
}


def test_aiohttp_still_does_what_the_prepared_answer_mirrors() -> None:
    """Fails loudly on an aiohttp upgrade that changes a function shared/prepared.py mirrors
    or whose private state it keeps: re-read that function, adapt prepared.py (its wire tests
    above must pass), then update the digest here."""
    stream, request = web_response.StreamResponse, web_request
    found = {
        "StreamResponse.prepare": stream.prepare,
        "StreamResponse._start": stream._start,
        "StreamResponse.write_eof": stream.write_eof,
        "StreamResponse.prepared": stream.prepared.fget,
        "StreamResponse.keep_alive": stream.keep_alive.fget,
        "StreamResponse.body_length": stream.body_length.fget,
        "Request._prepare_hook": request.Request._prepare_hook,
        "BaseRequest.writer": request.BaseRequest.writer.fget,
    }
    changed = [
        name
        for name, function in found.items()
        if hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16] != RELIED_ON[name]
    ]
    assert not changed, (
        f"aiohttp {aiohttp.__version__} changed {', '.join(changed)}: shared/prepared.py"
        " mirrors it; check it against the new source before updating RELIED_ON"
    )
    response = PreparedResponse(fixed_head(HEADERS, BODY), BODY)
    for field in ("_payload_writer", "_eof_sent", "_keep_alive", "_req", "_body_length"):
        assert hasattr(response, field), f"StreamResponse has no {field} any more"
    for field in ("_cookies", "_compression", "_chunked", "_headers"):
        assert hasattr(response, field), f"StreamResponse has no {field} any more"
    # The front door replaces the low-level server's handler before it accepts a connection:
    # each connection's handler must still take the server's at that moment.
    assert "manager.request_handler" in inspect.getsource(web_protocol.RequestHandler.__init__)
    assert "self.request_handler = handler" in inspect.getsource(web.Server.__init__)
