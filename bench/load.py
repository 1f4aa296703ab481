"""A closed-loop load generator, and a bare aiohttp server to measure it against.

    result = run_load(url, concurrency=32, duration=10, max_requests=50_000)
    result.rps, result.latency_ms["p50"], result.latency_ms["p99"], result.errors

N clients share one aiohttp session whose connector allows N connections; each client sends a
request, reads the whole answer and sends the next, until `max_requests` have been sent or
`duration` seconds have passed (a hard stop a little later cancels whatever is still waiting).
The client is Python too, so its own ceiling matters: measure the same load against
`with_bare_server()` (an aiohttp handler that does nothing) in the same run and report the
ratio, e.g. `ratio(service.rps, bare.rps)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.net import free_port, require_loopback
from bench.stats import summarize


@dataclass
class LoadResult:
    url: str
    method: str
    concurrency: int
    requests: int  # answered (any status)
    ok: int  # answered with a status in ok_statuses
    errors: int  # other statuses, connection errors and time-outs
    elapsed_s: float  # first request sent -> last answer read
    rps: float  # ok / elapsed_s
    latency_ms: dict[str, float]  # of ok answers: n, min, mean, median, p50, p90, p99, max
    statuses: dict[str, int] = field(default_factory=dict)  # "200": 123, "ClientOSError": 2
    bytes_read: int = 0
    stopped_by: str = ""  # "count" or "time"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def load(
    url: str,
    *,
    concurrency: int = 16,
    duration: float = 5.0,
    max_requests: int = 100_000,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    json_body: Any = None,
    ok_statuses: tuple[int, ...] = (200,),
    request_timeout: float = 10.0,
    make_body: Callable[[int], bytes | None] | None = None,
    make_headers: Callable[[int], Mapping[str, str] | None] | None = None,
) -> LoadResult:
    """Send requests from `concurrency` clients until `max_requests` or `duration` seconds.

    `make_body(n)`, if given, makes the body of the n-th request (1, 2, ...) instead of `body`:
    a unique body per request (a fresh title, say). `make_headers(n)` gives headers of the n-th
    request's own, added to `headers` (another reader's cookie, say)."""
    require_loopback(url)
    if concurrency < 1 or max_requests < 1 or duration <= 0:
        raise ValueError("concurrency, max_requests and duration must be positive")
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent = 0
    read = 0
    last_answer = 0.0
    stopped_by = "time"

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=dict(headers or {})
    ) as session:
        start = time.perf_counter()
        deadline = start + duration

        async def client() -> None:
            nonlocal sent, read, last_answer, stopped_by
            while True:
                if sent >= max_requests:
                    stopped_by = "count"
                    return
                if time.perf_counter() >= deadline:
                    return
                sent += 1
                data = body if make_body is None else make_body(sent)
                own = None if make_headers is None else make_headers(sent - 1)
                t0 = time.perf_counter()
                try:
                    async with session.request(
                        method, url, data=data, json=json_body, headers=own, allow_redirects=False
                    ) as response:
                        payload = await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as err:
                    statuses[type(err).__name__] += 1
                    continue
                t1 = time.perf_counter()
                last_answer = max(last_answer, t1)
                read += len(payload)
                statuses[str(status)] += 1
                if status in ok_statuses:
                    latencies.append((t1 - t0) * 1000)

        tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=duration + request_timeout + 5)
        for task in pending:  # only when the server hangs past every time-out
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pending:
            statuses["cancelled"] += len(pending)
    elapsed = max((last_answer or time.perf_counter()) - start, 1e-9)
    ok = len(latencies)
    answered = sum(n for s, n in statuses.items() if s.isdigit())
    return LoadResult(
        url=url,
        method=method,
        concurrency=concurrency,
        requests=answered,
        ok=ok,
        errors=sum(statuses.values()) - ok,
        elapsed_s=elapsed,
        rps=ok / elapsed,
        latency_ms=summarize(latencies, (50, 90, 99)),
        statuses=dict(statuses),
        bytes_read=read,
        stopped_by=stopped_by,
    )


def run_load(url: str, **options: Any) -> LoadResult:
    """`load()` from synchronous code (a benchmark function), in its own event loop."""
    return asyncio.run(load(url, **options))


@contextlib.contextmanager
def with_bare_server(
    body_bytes: int = 2,
    ready_timeout: float = 30.0,
    *,
    body_file: Path | None = None,
    content_type: str | None = None,
    etag: str | None = None,
) -> Iterator[str]:
    """A bare aiohttp server (`python -m bench.baseline_server`) on 127.0.0.1; yields its base
    URL. GET / answers `body_bytes` bytes (or the bytes of `body_file`, as `content_type`; with
    `etag`, 304 to a matching If-None-Match), POST / reads the body and answers 202 with JSON,
    POST /json parses it as JSON first: the floor any bantin handler is compared with. Stopped
    with SIGTERM on exit."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.baseline_server", "--port", str(port)]
    argv += ["--body-bytes", str(body_bytes)]
    if body_file is not None:
        argv += ["--body-file", str(body_file)]
    if content_type is not None:
        argv += ["--content-type", content_type]
    if etag is not None:
        argv += ["--etag", etag]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], ready_timeout)
        line = proc.stdout.readline() if readable else ""  # "ready" once listening
        if not line.startswith("ready"):
            raise RuntimeError(
                f"the baseline server was not ready in {ready_timeout:.0f} s"
                f" (exit code {proc.poll()})"
            )
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
