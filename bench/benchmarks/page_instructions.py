"""Issues 6 and 7, counted in instructions: a cached article page answered by the publisher
with page-view counting on, with it off, and by a bare aiohttp handler serving the same bytes,
each run under valgrind's callgrind, which counts the instructions a process executes.

Throughput on a shared 2-core machine moves by tens of percent between rounds (the load
generator, the server and the machine's other tenants share the cores); an instruction count
does not. It leaves out what the kernel does for the socket (the same for all three), so it
says what the Python side of an answer costs, and the ratios are the same ones as
page_throughput's: bare / on (the page's ratio to a bare handler) and off / on (counting's).

Each server runs under valgrind (about 50 times slower), is warmed, then answers N requests
from one returning reader on four keep-alive connections while callgrind counts; the count of
that window divided by N is the figure. Periodic work that does not depend on the requests is
held still in the publisher, or valgrind's slowdown would make it look 50 times heavier per
request: the page-view flusher's 100 ms timer (views still go when FLUSH_AT different views
wait) and the statistics snapshot's one-second refresh. What those do is left out of the
figure: sending the views (for this one reader, a line a second and a Redis call every 100 ms:
a Redis call costs the Python client about 150 us, spread over the 2,500 requests of 100 ms at
25,000 a second) and preparing the page's answer again when the statistics change (once a
second). Skipped, with a reason, where valgrind is not installed (`apt-get install valgrind`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.benchmarks.page_throughput import HTML, _publish
from bench.registry import Context, Results, benchmark
from bench.stack import with_stack
from bench.stats import ratio
from bench.support import backends, banner, fmt_ratio, free_port, reader_headers, say, stop

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 4
# The publisher with its periodic work held still (see the module's docstring).
PUBLISHER = """
import sys
import services.publisher.cache as cache
import shared.counting.record as record
record.FLUSH_INTERVAL = 10.0**6
cache.LIVE_SECONDS = 10.0**6
from bantin.cli import main
sys.exit(main(sys.argv[1:]))
"""


@benchmark(
    "page_instructions",
    description="instructions per cached page (callgrind): counting on/off vs a bare aiohttp"
    " handler with the same bytes",
)
def page_instructions(ctx: Context) -> Results:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        say("  skipped: valgrind is not installed (apt-get install valgrind)")
        return {"summary": {"status": "skipped (apt-get install valgrind)"}}
    requests = ctx.pick(2000, 200)
    with with_stack() as stack:
        database_url, redis_url = backends(stack)
        path = asyncio.run(_publish(stack))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BANTIN_")}
        env.update(
            {
                "BANTIN_DATABASE_URL": database_url,
                "BANTIN_REDIS_URL": redis_url,
                "BANTIN_PUBLIC_URL": stack.site_url,
                "BANTIN_ADMIN_TOKEN": stack.admin_token,
                "BANTIN_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT),
                "PYTHONHASHSEED": "0",  # the same dictionaries, run after run
            }
        )
        headers = reader_headers()
        scratch = Path(tempfile.mkdtemp(prefix="bantin-bench-instr-"))
        try:
            per: dict[str, float] = {}
            page = b""
            for name in ("counting_on", "counting_off", "bare"):
                port = free_port()
                listen = ["--host", "127.0.0.1", "--port", str(port)]
                if name == "bare":
                    (scratch / "page.html").write_bytes(page)
                    argv = ["-m", "bench.baseline_server", "--port", str(port)]
                    argv += ["--body-file", str(scratch / "page.html"), "--content-type", HTML]
                    target = "/"
                else:
                    argv = ["-c", PUBLISHER, "publisher", *listen]
                    target = path
                    env["BANTIN_COUNT_VIEWS"] = "on" if name == "counting_on" else "off"
                    env["BANTIN_HOME"] = str(scratch / f"home-{name}")
                say(f"  {name}: {requests} requests under callgrind")
                per[name], body = _count(
                    [sys.executable, *argv], env, port, target, headers, requests, scratch / name
                )
                page = page or body
                say(f"  {name}: {per[name]:,.0f} instructions a request")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    ratios = {
        "counting_on_vs_bare": ratio(per["bare"], per["counting_on"]),
        "counting_on_vs_off": ratio(per["counting_off"], per["counting_on"]),
        "counting_off_vs_bare": ratio(per["bare"], per["counting_off"]),
    }
    banner(
        "page_instructions (the page's ratios: fewer instructions, higher)",
        [
            (
                "page (counting on) : bare",
                f"{fmt_ratio(ratios['counting_on_vs_bare'])}   ({per['counting_on']:,.0f} vs"
                f" {per['bare']:,.0f} instructions a request)",
            ),
            (
                "counting on : off",
                f"{fmt_ratio(ratios['counting_on_vs_off'])}   ({per['counting_on']:,.0f} vs"
                f" {per['counting_off']:,.0f})",
            ),
            ("counting's own cost", f"{per['counting_on'] - per['counting_off']:,.0f} a request"),
        ],
    )
    return {
        "params": {"requests": requests, "connections": CONNECTIONS, "page_bytes": len(page)},
        "instructions_per_request": per,
        "ratios": ratios,
    }


def _count(
    argv: list[str],
    env: dict[str, str],
    port: int,
    path: str,
    headers: dict[str, str],
    requests: int,
    out: Path,
) -> tuple[float, bytes]:
    """(instructions a request, the body answered) of a server started under callgrind."""
    out.mkdir(parents=True)
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p"]
    with (out / "log").open("wb") as log:
        proc = subprocess.Popen(
            valgrind + argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                body = asyncio.run(_drive(port, path, headers, CONNECTIONS))
                break
            except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (out / "log").read_bytes()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"{argv} did not answer under valgrind: {tail}") from err
                time.sleep(1)
        asyncio.run(_measured(proc.pid, port, path, headers, requests))
        dumps = sorted(out.glob("cg.*"), key=lambda p: p.stat().st_mtime)
        return _total(dumps[-1]) / requests, body
    finally:
        stop(proc, timeout=120)  # valgrind's exit writes its last dump


async def _drive(port: int, path: str, headers: dict[str, str], requests: int) -> bytes:
    """`requests` GETs on new keep-alive connections; the last body answered."""
    connections = [await _Connection.open(port, path, headers) for _ in range(CONNECTIONS)]
    try:
        return await _spread(connections, requests)
    finally:
        for connection in connections:
            await connection.close()


async def _measured(pid: int, port: int, path: str, headers: dict[str, str], n: int) -> None:
    """Warm, then count `n` requests on connections opened before the count starts."""
    connections = [await _Connection.open(port, path, headers) for _ in range(CONNECTIONS)]
    try:
        await _spread(connections, 400)  # warm: caches, memos, specialization
        await asyncio.to_thread(_control, pid, "--zero")
        await _spread(connections, n)
        await asyncio.to_thread(_control, pid, "--dump=measured")
    finally:
        for connection in connections:
            await connection.close()


async def _spread(connections: list[_Connection], requests: int) -> bytes:
    count = len(connections)
    share = [requests // count + (i < requests % count) for i in range(count)]
    bodies = await asyncio.gather(*(c.get(n) for c, n in zip(connections, share, strict=True)))
    return next((body for body in reversed(bodies) if body), b"")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes):
        self.reader, self.writer, self.request = reader, writer, request

    @classmethod
    async def open(cls, port: int, path: str, headers: dict[str, str]) -> _Connection:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, ("\r\n".join(lines) + "\r\n\r\n").encode())

    async def get(self, count: int) -> bytes:
        """`count` requests one after the other; the last body."""
        body = b""
        for _ in range(count):
            self.writer.write(self.request)
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 120)
            if not head.startswith(b"HTTP/1.1 200 "):
                raise ValueError(head[:200])
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if length is None:
                raise ValueError(f"no Content-Length: {head[:200]!r}")
            body = await self.reader.readexactly(int(length[1]))
        return body

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def _control(pid: int, action: str) -> None:
    subprocess.run(["callgrind_control", action, str(pid)], check=True, capture_output=True)


def _total(dump: Path) -> int:
    with dump.open() as lines:
        for line in lines:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no total in {dump}")
