#!/opt/venv/bin/python
"""The container health check of the bantin image, for every role.

    bantin-healthcheck            is the role alive? (the image's HEALTHCHECK)
    bantin-healthcheck --ready    is it ready? (docker-compose.yml: ingest, publisher)

The role, and the port of an HTTP role, come from the command line of the container's `bantin`
process (PID 1, or the child of docker-init under `init: true`), so one image-wide HEALTHCHECK
fits every role, whatever `--port` the container was given:

- ingest, publisher: GET /healthz (alive) or /readyz (PostgreSQL and Redis answer) on 127.0.0.1.
- up: the same, on the site port.
- worker: the worker answers a Celery ping addressed to its own node name
  (`worker-<pid>@<hostname>`, as `bantin worker` names itself), through the broker: this catches
  a worker whose process lives but no longer consumes (lost broker connection, wedged consumer),
  which Docker cannot see by itself.
- beat: the broker it sends the periodic tasks to (Redis) answers a PING: a beat that cannot
  reach it sends nothing (the sweep, the counters' drains) while its process looks alive.
- migrate, admin commands: nothing to ask; Docker already watches the process.

Exit status 0 is healthy, 1 unhealthy (Docker's convention); one line says why.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import Settings

HTTP_PORTS = {"ingest": 8081, "publisher": 8080, "up": 8080}
PORT_FLAGS = {"ingest": "--port", "publisher": "--port", "up": "--site-port"}
HTTP_TIMEOUT = 5.0
PING_TIMEOUT = 5.0


def bantin_args(cmdline: Sequence[str]) -> list[str] | None:
    """The arguments after `bantin` when this command line runs the bantin command itself
    (`bantin ...`, `python /opt/venv/bin/bantin ...` or `python -m bantin.cli ...`), else None.
    docker-init's own command line (`docker-init -- bantin worker`) is not the bantin process."""
    if not cmdline:
        return None
    first = os.path.basename(cmdline[0])
    if first == "bantin":
        return list(cmdline[1:])
    if first.startswith("python"):
        rest = list(cmdline[1:])
        if rest and os.path.basename(rest[0]) == "bantin":
            return rest[1:]
        if rest[:2] == ["-m", "bantin.cli"] or rest[:2] == ["-m", "bantin"]:
            return rest[2:]
    return None


def find_bantin(proc: Path = Path("/proc")) -> tuple[int, list[str]] | None:
    """(pid, arguments) of the main bantin process: the lowest pid running bantin (a worker's
    pool processes are forked children with the same command line)."""
    found: list[tuple[int, list[str]]] = []
    try:
        entries = list(proc.iterdir())
    except OSError:
        return None  # no /proc to read: nothing to find
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        args = bantin_args([part.decode(errors="replace") for part in raw.split(b"\0") if part])
        if args is not None:
            found.append((int(entry.name), args))
    return min(found) if found else None


def role_and_port(args: Sequence[str]) -> tuple[str, int | None]:
    """The role (`bantin ROLE ...`) and, for an HTTP role, the port it listens on."""
    role = next((a for a in args if not a.startswith("-")), "")
    if role not in HTTP_PORTS:
        return role, None
    flag, port = PORT_FLAGS[role], HTTP_PORTS[role]
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            port = int(args[i + 1])
        elif arg.startswith(flag + "="):
            port = int(arg.split("=", 1)[1])
    return role, port


def check_http(port: int, path: str, timeout: float = HTTP_TIMEOUT) -> str | None:
    """None when GET http://127.0.0.1:PORT/PATH answers 200, else what went wrong."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as err:
        return f"{url} answered {err.code}: {err.read(500).decode(errors='replace')}"
    except (OSError, ValueError) as err:
        return f"{url} did not answer: {err}"
    return None if status == 200 else f"{url} answered {status}"


def check_worker(
    pid: int, timeout: float = PING_TIMEOUT, settings: Settings | None = None
) -> str | None:
    """None when the worker of this pid, on this host, answers a Celery ping."""
    from shared.settings import Settings
    from workers.app import configure

    app = configure(settings or Settings.from_env())
    node = f"worker-{pid}@{socket.gethostname()}"
    with app.connection_for_write() as conn:
        replies = app.control.ping(destination=[node], timeout=timeout, connection=conn)
    if any(node in reply for reply in replies or []):
        return None
    return f"worker {node} did not answer a ping in {timeout:g} s"


def check_broker(timeout: float = PING_TIMEOUT, settings: Settings | None = None) -> str | None:
    """None when the Celery broker (Redis) answers a PING."""
    import redis

    from shared.settings import Settings

    _, url = (settings or Settings.from_env()).require_backends()
    try:
        with redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout) as r:
            r.ping()
    except redis.RedisError as err:
        return f"the broker did not answer: {type(err).__name__}: {err}"
    return None


def check(role: str, port: int | None, pid: int, ready: bool) -> str | None:
    if port is not None:
        return check_http(port, "/readyz" if ready else "/healthz")
    if role == "worker":
        return check_worker(pid)
    if role == "beat":
        return check_broker()
    return None  # migrate, token commands: the running process is all there is


def main(argv: Sequence[str] | None = None, proc: Path = Path("/proc")) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ready = "--ready" in argv
    found = find_bantin(proc)
    if found is None:
        sys.stdout.write("unhealthy: no bantin process in this container\n")
        return 1
    pid, args = found
    role = "bantin"
    try:
        role, port = role_and_port(args)
        problem = check(role, port, pid, ready)
    except Exception as err:  # any failure to check is a failed check, said in one line
        problem = f"{type(err).__name__}: {err}"
    if problem:
        sys.stdout.write(f"unhealthy: {role or 'bantin'}: {problem}\n")
        return 1
    sys.stdout.write(f"healthy: {role or 'bantin'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
