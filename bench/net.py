"""Network guard rails: benchmarks talk to 127.0.0.1 only, on ports picked free."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"


class NotLoopback(ValueError):
    """A benchmark tried to send traffic somewhere other than 127.0.0.1."""


def require_loopback(url: str) -> str:
    """Return `url` unchanged if it is http://127.0.0.1[:port]/..., else raise NotLoopback."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != LOOPBACK:
        raise NotLoopback(f"refusing to send benchmark traffic to {url!r} (only http://{LOOPBACK})")
    return url


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the usual small race applies)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port
