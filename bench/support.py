"""Pieces the throughput benchmarks share: a running stack's servers, its role processes,
extra bantin roles started by hand, waiting for background work to settle, a reader's headers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from redis import Redis

from bench.net import free_port, require_loopback
from bench.stack import Stack
from shared import keys
from shared.tasks import QUEUES

# A browser a reader would use: not a bot (shared/counting/record.py), so every view counts.
BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0 Safari/537.36"
)


def reader_cookie(seed: int = 0) -> str:
    """A `bantin_vid` cookie as the site gives it, days ago: a returning reader, known by it
    (no Set-Cookie in the answer, no hashing of the address)."""
    day = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y%m%d")
    random_part = f"benchreader{seed:05d}"[-16:].rjust(16, "r")
    return f"bantin_vid={random_part}.{day}.{seed:016x}"


def reader_headers(seed: int = 0) -> dict[str, str]:
    """What a returning reader's browser sends, and the same for every load generator: no
    compression (the bare handlers serve the plain bytes), a browser's User-Agent, its cookie."""
    return {"User-Agent": BROWSER, "Accept-Encoding": "identity", "Cookie": reader_cookie(seed)}


def say(line: str = "") -> None:
    print(line, flush=True)  # noqa: T201 (progress and ratios for the person running it)


def banner(title: str, rows: Sequence[tuple[str, str]]) -> None:
    """Print ratios prominently, with the absolute figures beside them."""
    width = max((len(k) for k, _ in rows), default=10)
    say("")
    say(f"  >>> {title}")
    for key, value in rows:
        say(f"  >>>   {key:<{width}}  {value}")


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}x"


# --- a running `bantin up` -----------------------------------------------------------------------


def backends(stack: Stack) -> tuple[str, str]:
    """(database URL, Redis URL) of the stack's embedded servers, from <home>/run/env.json."""
    path = stack.home / "run" / "env.json"
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.1)
    env = json.loads(path.read_text())
    database_url, redis_url = env["BANTIN_DATABASE_URL"], env["BANTIN_REDIS_URL"]
    for url in (database_url, redis_url):
        host = urllib.parse.urlsplit(url).hostname
        if host != "127.0.0.1":
            raise RuntimeError(f"the stack's server {url!r} is not on 127.0.0.1")
    return database_url, redis_url


def role_process(stack: Stack, role: str) -> psutil.Process:
    """The stack's child running `python -m bantin.cli ROLE` (ingest, publisher, worker...)."""
    for child in psutil.Process(stack.proc.pid).children(recursive=True):
        try:
            argv = child.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "bantin.cli" in argv and role in argv[argv.index("bantin.cli") + 1 :][:1]:
            return child
    raise RuntimeError(f"no `bantin.cli {role}` process under bantin up (pid {stack.proc.pid})")


@dataclass
class Settled:
    waits: int = 0
    seconds: float = 0.0
    timeouts: int = 0


def settle(
    redis_url: str,
    *,
    timeout: float,
    stream: bool = True,
    queues: Sequence[str] = QUEUES,
    record: Settled | None = None,
) -> float:
    """Wait (at most `timeout` s) until the workers have caught up: every Celery queue empty
    and, with `stream`, the page-view stream drained. Returns the seconds waited."""
    t0 = time.monotonic()
    done = False
    with Redis.from_url(redis_url, socket_timeout=5) as r:
        while time.monotonic() - t0 < timeout:
            pipe = r.pipeline(transaction=False)
            for queue in queues:
                pipe.llen(queue)
            if stream:
                pipe.xlen(keys.HITS_STREAM)
            if not any(int(n) for n in pipe.execute()):
                done = True
                break
            time.sleep(0.1)
    waited = time.monotonic() - t0
    if record is not None:
        record.waits += 1
        record.seconds += waited
        record.timeouts += not done
    return waited


# --- extra roles, started by hand against a stack's servers ---------------------------------------


@contextlib.contextmanager
def bantin_role(
    role: str,
    env: Mapping[str, str],
    *,
    args: Sequence[str] = (),
    ready_path: str | None = "/healthz",
    port: int | None = None,
    timeout: float = 60.0,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `python -m bantin.cli ROLE [--host 127.0.0.1 --port P] ARGS` with exactly `env`'s
    BANTIN_* settings (the rest of this process's environment otherwise); yields (base URL,
    process) once GET ready_path answers 200; SIGTERM on exit. Its log is kept only if it
    fails to start (the error names it)."""
    scratch = Path(tempfile.mkdtemp(prefix=f"bantin-bench-{role}-"))
    log = scratch / f"{role}.log"
    argv = [sys.executable, "-m", "bantin.cli", role]
    url = ""
    if ready_path is not None:
        port = port or free_port()
        url = require_loopback(f"http://127.0.0.1:{port}")
        argv += ["--host", "127.0.0.1", "--port", str(port)]
    argv += list(args)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("BANTIN_")}
    child_env.update({"BANTIN_HOME": str(scratch / "home"), "PYTHONUNBUFFERED": "1"})
    child_env.update(env)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
        )
    try:
        if ready_path is not None:
            _wait_http(url + ready_path, proc, log, timeout)
        yield url, proc
    finally:
        stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)


def stop(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM, wait; SIGKILL to its process group only if it outlives `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    import http.client

    parts = urllib.parse.urlsplit(require_loopback(url))
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{url}: the process exited ({proc.returncode}):\n{tail}")
        try:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=2)
            conn.request("GET", parts.path)
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s:\n{tail}")
        time.sleep(0.1)


def wait_for(check: Any, what: str, timeout: float, interval: float = 0.1) -> float:
    """Poll `check()` until true; returns the seconds it took; raises after `timeout`."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - t0
