"""`with_stack()`: run `bantin up` as a user would, as a subprocess, and always stop it.

    with with_stack() as stack:                # a fresh home in a temporary folder
        stack.site_url, stack.api_url          # http://127.0.0.1:PORT
        stack.admin_headers                    # {"Authorization": "Bearer <BANTIN_ADMIN_TOKEN>"}
        stack.ready_s                          # launch -> "bantin ready" line, in seconds

The child gets a fresh 40-character BANTIN_ADMIN_TOKEN and no other BANTIN_* variable (so it
starts its own embedded PostgreSQL and Redis, keeps its data in the given home and links to
127.0.0.1). It runs in its own session; on leaving the block (normally, on an error or on
Ctrl-C) it gets SIGTERM and is waited for, and killed only if it does not stop in time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.net import free_port, require_loopback

READY_PREFIX = "bantin ready site="
READY_TIMEOUT = 240.0  # the supervisor's own is 120 s, plus initdb on a cold home
STOP_TIMEOUT = 90.0  # the supervisor gives each group of children 15 s


class StackError(RuntimeError):
    """`bantin up` exited or did not become ready; the message ends with its log's tail."""


def new_token() -> str:
    """A random 40-character token (URL-safe base64 of 30 random bytes)."""
    return secrets.token_urlsafe(30)


@dataclass
class Stack:
    """A running `bantin up`, as seen from outside."""

    home: Path
    site_url: str
    api_url: str
    admin_token: str
    site_port: int
    api_port: int
    ready_s: float  # from Popen to the ready line on stdout
    log: Path  # the child's stdout and stderr
    proc: subprocess.Popen[str]
    stop_s: float | None = None  # from SIGTERM to exit, once stopped
    output: list[str] = field(default_factory=list)  # stdout lines so far

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def api(self, path: str) -> str:
        return require_loopback(self.api_url + path)

    def site(self, path: str) -> str:
        return require_loopback(self.site_url + path)


def child_env(admin_token: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any BANTIN_* setting, plus the admin token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTIN_")}
    env.update({"BANTIN_ADMIN_TOKEN": admin_token, "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


@contextlib.contextmanager
def with_stack(
    home: Path | None = None,
    *,
    admin_token: str | None = None,
    site_port: int | None = None,
    api_port: int | None = None,
    workers: int | None = None,
    demo: bool = False,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = READY_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[Stack]:
    """Start `bantin up --home HOME --site-port P --api-port Q [--no-demo]`, yield once it
    prints its ready line, stop it with SIGTERM at the end.

    Without `home`, a temporary folder is used and removed afterwards; with one, the caller
    owns it (so that several starts can share an initialised home). `workers` passes
    `--workers N` (default: bantin's own, one per core).
    """
    scratch = Path(tempfile.mkdtemp(prefix="bantin-bench-"))
    try:
        home = (home or scratch / "home").absolute()
        token = admin_token or new_token()
        site_port = site_port or free_port()
        api_port = api_port or free_port()
        argv = [sys.executable, "-m", "bantin.cli", "up", "--home", str(home)]
        argv += ["--site-port", str(site_port), "--api-port", str(api_port)]
        if workers is not None:
            argv += ["--workers", str(workers)]
        if not demo:
            argv.append("--no-demo")
        argv += list(extra_args)
        log = scratch / "bantin-up.log"
        child = _Child(argv, child_env(token, env), log, cwd=scratch, home=home)
        try:
            site_url, api_url = child.wait_ready(ready_timeout)
            stack = Stack(
                home=home,
                site_url=site_url,
                api_url=api_url,
                admin_token=token,
                site_port=site_port,
                api_port=api_port,
                ready_s=child.ready_at - child.started_at,
                log=log,
                proc=child.proc,
                output=child.lines,
            )
            try:
                yield stack
            except Exception as err:
                if child.proc.poll() is not None:  # it died under us: say how
                    err.add_note(child.tail())
                raise
            child.stop(stop_timeout)
            stack.stop_s = child.stop_s
        finally:
            child.stop(stop_timeout)  # a no-op when stopped already
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Child:
    """The `bantin up` process, its stdout reader thread and its log file."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log: Path, cwd: Path, home: Path
    ) -> None:
        self.log = log
        self.home = home
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.ready_line = ""
        self.ready_at = 0.0
        self.stop_s: float | None = None
        self._log_file = log.open("w", encoding="utf-8")
        self.started_at = time.monotonic()
        self.proc: subprocess.Popen[str] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env=env,
            cwd=cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us; we stop it in order
        )
        self._reader = threading.Thread(target=self._read, name="bantin-up-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # drains to EOF so that the child never blocks on a pipe
            now = time.monotonic()
            line = line.rstrip("\n")
            self.lines.append(line)
            self._log_file.write(f"[stdout] {line}\n")
            self._log_file.flush()
            if not self.ready.is_set() and line.startswith(READY_PREFIX):
                self.ready_at, self.ready_line = now, line
                self.ready.set()

    def wait_ready(self, timeout: float) -> tuple[str, str]:
        deadline = self.started_at + timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                if self.ready.is_set():
                    break
                raise StackError(
                    f"bantin up exited with code {self.proc.returncode} before it was ready"
                    f"{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise StackError(f"bantin up was not ready within {timeout:.0f} s{self.tail()}")
        fields = dict(part.split("=", 1) for part in self.ready_line.split()[2:] if "=" in part)
        try:
            return require_loopback(fields["site"]), require_loopback(fields["api"])
        except KeyError:
            raise StackError(f"cannot read the ready line {self.ready_line!r}") from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait; SIGKILL to its process group only if it outlives `timeout`."""
        if self.proc.poll() is None:
            sent = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
                self.stop_s = time.monotonic() - sent
            except (subprocess.TimeoutExpired, KeyboardInterrupt) as err:
                print(  # noqa: T201
                    f"bench: bantin up (pid {self.proc.pid}) did not stop"
                    f" ({type(err).__name__}); killing it",
                    file=sys.stderr,
                )
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                if isinstance(err, KeyboardInterrupt):
                    raise
        self._reader.join(timeout=10)
        if not self._log_file.closed:
            self._log_file.close()

    def tail(self, lines: int = 30) -> str:
        """The last lines of bantin up's output, and of each role's log in its home (which
        may be a temporary folder that is gone by the time someone reads the error)."""
        if not self._log_file.closed:
            self._log_file.flush()
        parts = [("bantin up", self.log, lines)]
        parts += [(f.name, f, 10) for f in sorted((self.home / "logs").glob("*.log"))]
        out = []
        for name, path, n in parts:
            try:
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            if text:
                out.append(f"--- last lines of {name} ---\n" + "\n".join(text[-n:]))
        return "\n" + "\n".join(out) if out else ""


# --- the submitters' API, as benchmarks use it -----------------------------------------------


async def ensure_category(
    session: aiohttp.ClientSession, stack: Stack, slug: str, name: str
) -> None:
    """POST /api/v1/categories with the admin token; an existing category is fine (409)."""
    async with session.post(
        stack.api("/api/v1/categories"),
        json={"slug": slug, "name": name},
        headers=stack.admin_headers,
    ) as response:
        if response.status not in (201, 409):
            raise StackError(
                f"creating category {slug!r}: HTTP {response.status}: {await response.text()}"
            )


async def post_article(
    session: aiohttp.ClientSession, stack: Stack, article: Mapping[str, Any]
) -> dict[str, Any]:
    """POST /api/v1/articles (JSON) with the admin token; the 202 answer's JSON."""
    async with session.post(
        stack.api("/api/v1/articles"), json=dict(article), headers=stack.admin_headers
    ) as response:
        if response.status != 202:
            raise StackError(f"posting an article: HTTP {response.status}: {await response.text()}")
        answer: dict[str, Any] = await response.json()
        return answer
