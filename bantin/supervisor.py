"""`bantin up`: every part of bantin on one machine, as supervised child processes.

Order of start: embedded PostgreSQL and Redis (unless URLs are given), migrations, tokens and
demo content, then the workers (one for the renditions a first page view does without), beat,
ingest and publisher. The ready line is printed once every part answers its health check. A
part that dies, embedded servers included, is restarted (at most RESTARTS times a minute, then
the stack stops and says which part failed and where its log is): PostgreSQL recovers from its
write-ahead log, Redis from its append-only file, on the same port, and every role reconnects by
itself (answering 503 meanwhile). Ctrl-C or SIGTERM stops every child, servers last, and leaves
no process behind.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bantin import embedded
from shared import db
from shared.settings import Settings
from shared.tasks import RENDITIONS

log = logging.getLogger("bantin.up")

RESTARTS = 5  # per minute, per role
STOP_GRACE = 15.0
READY_TIMEOUT = 120.0


class CannotStart(RuntimeError):
    """Something the person must fix before the stack can start; said in one line."""


class AlreadyRunning(CannotStart):
    pass


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] | None
    logfile: Path
    server: bool = False  # an embedded server: stopped last
    proc: subprocess.Popen[bytes] | None = None
    deaths: deque[float] = field(default_factory=deque)
    launch: Callable[[], subprocess.Popen[bytes]] | None = None  # a server's own start

    def start(self) -> None:
        if self.proc is not None:
            # What the dead process left in its group goes first (a worker's pool processes).
            # PostgreSQL's backends have sessions of their own: they notice their postmaster's
            # death and exit by themselves, and a new server that finds them still holding the
            # shared memory exits, to be started again on the next round.
            _kill_group(self.proc)
        if self.launch is not None:
            self.proc = self.launch()
        else:
            self.proc = embedded.spawn(self.argv, logfile=self.logfile, env=self.env)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Options:
    site_port: int = 8080
    api_port: int = 8081
    workers: int = 2
    demo: bool = True


class Stack:
    def __init__(self, settings: Settings, options: Options, out: IO[str] = sys.stdout) -> None:
        self.settings = settings
        self.options = options
        self.out = out
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.home = settings.home
        self.logs = self.home / "logs"
        self._lock_file: IO[str] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._lock_home()
            self._check_ports()
            started = time.monotonic()
            self._start_backends()
            if self.stopping.is_set():
                return 0
            from bantin import bootstrap

            db.migrate(self._settings().database_url or "")
            secrets = bootstrap.prepare(self._settings(), demo=self.options.demo)
            self._write_run_env()
            self._start_roles()
            self._wait_ready()
            if secrets.demo_token:
                bootstrap.post_demo(self._settings(), self.api_url, secrets.demo_token)
                self._say(f"demo submitter token (shown once): {secrets.demo_token}")
            if secrets.demo_editor:
                user, password = secrets.demo_editor
                self._say(
                    f"demo desk account (shown once): {user} / {password} at {self.api_url}/desk/"
                )
            self._say(f"bantin ready site={self.site_url} api={self.api_url}")
            log.info("ready in %.1f s", time.monotonic() - started)
            return self._supervise()
        except CannotStart as err:
            print(f"bantin: {err}", file=sys.stderr)
            return 1
        except Exception as err:
            log.debug("start-up failed", exc_info=True)
            if not self.stopping.is_set():
                print(f"bantin: start-up failed: {err}", file=sys.stderr)
            return 1
        finally:
            self._stop_all()
            self._unlock_home()

    def _check_ports(self) -> None:
        """Before anything starts (initdb takes seconds): a port another program holds is
        named, with the option that picks another."""
        for port, option in (
            (self.options.site_port, "--site-port"),
            (self.options.api_port, "--api-port"),
        ):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError as err:
                    raise CannotStart(
                        f"port {port} is taken by another program ({err.strerror}); pick another"
                        f" with {option} {port + 10} (make run ARGS='{option} {port + 10}')"
                    ) from err

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping.set()

    def _say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    # --- home lock ------------------------------------------------------------------------------

    def _lock_home(self) -> None:
        run = self.home / "run"
        run.mkdir(parents=True, exist_ok=True)
        lock = (run / "bantin.pid").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            pid = lock.read().strip() or "?"
            lock.close()
            raise AlreadyRunning(
                f"another `bantin up` (pid {pid}) is running on {self.home};"
                " stop it first, or use another --home"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock_file = lock

    def _unlock_home(self) -> None:
        (self.home / "run" / "env.json").unlink(missing_ok=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- parts ----------------------------------------------------------------------------------

    def _start_backends(self) -> None:
        changes: dict[str, Any] = {}
        if not self.settings.database_url:
            pg = embedded.EmbeddedPostgres(self.home)
            self._say(f"starting embedded PostgreSQL in {pg.data}")
            proc = pg.start()
            self.children.append(
                Child("postgres", [], None, pg.logfile, server=True, proc=proc, launch=pg.launch)
            )
            changes["database_url"] = pg.url
        if not self.settings.redis_url:
            redis = embedded.EmbeddedRedis(self.home)
            self._say(f"starting embedded Redis in {redis.dir}")
            proc = redis.start()
            self.children.append(
                Child("redis", [], None, redis.logfile, server=True, proc=proc, launch=redis.launch)
            )
            changes["redis_url"] = redis.url
        if not self.settings.public_url:
            changes["public_url"] = self.site_url
        self.settings = self.settings.with_(**changes)

    def _settings(self) -> Settings:
        return self.settings

    @property
    def site_url(self) -> str:
        return f"http://127.0.0.1:{self.options.site_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.options.api_port}"

    def _write_run_env(self) -> None:
        """Lets `bantin token create` (and friends) find this stack's servers."""
        path = self.home / "run" / "env.json"
        path.write_text(
            json.dumps(
                {
                    "BANTIN_DATABASE_URL": self.settings.database_url,
                    "BANTIN_REDIS_URL": self.settings.redis_url,
                    "pid": os.getpid(),
                }
            )
        )
        path.chmod(0o600)

    def _start_roles(self) -> None:
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        me = [sys.executable, "-m", "bantin.cli"]
        worker = [*me, "worker", "--concurrency", str(self.options.workers)]
        roles = [
            # Two workers: a photo's first view never waits behind another photo's AVIF, which
            # one process of its own renders at a low CPU priority (shared/tasks.py).
            ("worker", [*worker, "--exclude-queues", RENDITIONS]),
            (
                "renditions",
                [*me, "worker", "--queues", RENDITIONS, "--concurrency", "1", "--nice", "5"],
            ),
            ("beat", [*me, "beat"]),
            (
                "ingest",
                [*me, "ingest", "--host", "127.0.0.1", "--port", str(self.options.api_port)],
            ),
            (
                "publisher",
                [*me, "publisher", "--host", "127.0.0.1", "--port", str(self.options.site_port)],
            ),
        ]
        for name, argv in roles:
            child = Child(name, argv, env, self.logs / f"{name}.log")
            child.start()
            self.children.append(child)

    def _wait_ready(self) -> None:
        checks = {
            "ingest": lambda: _http_ok(self.api_url + "/healthz"),
            "publisher": lambda: _http_ok(self.site_url + "/healthz"),
            "worker": self._worker_answers,
        }
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = dict(checks)
        while waiting:
            if self.stopping.is_set():
                raise RuntimeError("interrupted")
            for child in self.children:
                if not child.alive:
                    raise RuntimeError(
                        f"{child.name} exited with code {child.proc and child.proc.returncode}"
                        f" during start-up; see {child.logfile}"
                    )
            for name, check in list(waiting.items()):
                if check():
                    del waiting[name]
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{', '.join(waiting)} did not answer its health check in"
                    f" {READY_TIMEOUT:.0f} s; see {self.logs}"
                )
            time.sleep(0.2)

    def _worker_answers(self) -> bool:
        from workers.app import app, configure

        configure(self.settings)
        try:
            # Every worker started, the one of the renditions too.
            workers = sum(1 for child in self.children if "worker" in child.argv)
            return len(app.control.ping(timeout=0.5) or []) >= workers
        except Exception:
            return False

    def _supervise(self) -> int:
        while not self.stopping.wait(0.5):
            for child in self.children:
                if child.alive:
                    continue
                code = child.proc.returncode if child.proc else None
                now = time.monotonic()
                child.deaths.append(now)
                while child.deaths and child.deaths[0] < now - 60:
                    child.deaths.popleft()
                if len(child.deaths) > RESTARTS:
                    print(
                        f"bantin: {child.name} exited {len(child.deaths)} times in a minute"
                        f" (last code {code}); stopping everything (see {child.logfile})",
                        file=sys.stderr,
                    )
                    return 1
                log.warning("%s exited with code %s; restarting it", child.name, code)
                try:
                    child.start()
                except Exception as err:  # counted as one more death on the next round
                    log.error("could not restart %s: %s (see %s)", child.name, err, child.logfile)
        return 0

    def _stop_all(self) -> None:
        """Roles first (they flush and finish requests), then Redis and PostgreSQL."""
        roles = [c for c in self.children if not c.server]
        servers = [c for c in self.children if c.server]
        _stop(roles, signal.SIGTERM)
        _stop([c for c in servers if c.name == "redis"], signal.SIGTERM)
        _stop([c for c in servers if c.name == "postgres"], signal.SIGINT)  # fast shutdown
        self.children.clear()


def _stop(children: list[Child], sig: int) -> None:
    for child in children:
        if child.alive and child.proc:
            child.proc.send_signal(sig)
    deadline = time.monotonic() + STOP_GRACE
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", child.name, STOP_GRACE)
        # Whatever the child left in its process group (pool processes, backends) goes too.
        _kill_group(child.proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
