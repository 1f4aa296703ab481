"""A raw HTTP/1.1 exchange: the corpus's requests carry bytes that well-behaved clients refuse
to send (a non-UTF-8 header, a port out of range in Host), so they are written by hand."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lowercased; the last of repeated ones
    body: bytes


def exchange(port: int, request: bytes, timeout: float = 15.0, half_close: bool = False) -> Answer:
    """Send `request` to 127.0.0.1:`port` and read the answer until the server closes (the
    request says `Connection: close`). A server that does not answer in `timeout` s raises
    TimeoutError: a hang. `half_close`: then end the sending side, as a client that goes away
    in the middle of its body does."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1."):
        raise ConnectionError(f"no HTTP answer: {raw[:200]!r}")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    return Answer(status, headers, body)


def request(method: str, path: str, port: int, headers: dict[str, str], body: bytes = b"") -> bytes:
    """The request's bytes. Header values are written as Latin-1, byte for byte: the corpus
    writes a raw byte as a YAML escape ("\\xe9")."""
    given = {k.lower() for k in headers}
    lines = [f"{method} {path} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: 127.0.0.1:{port}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    framed = "content-length" in given or "transfer-encoding" in given
    if not framed and (body or method in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _unchunk(body: bytes) -> bytes:
    out = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        body = rest[size + 2 :]
    return b"".join(out)
