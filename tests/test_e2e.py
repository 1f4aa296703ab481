"""The whole stack as a user starts it: `bantin up` in a subprocess, on free ports, with a
temporary home; the seed article travels from the API to its page and both feeds; SIGTERM
leaves no process behind."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import feedparser
import psutil
import pytest

from bantin.bootstrap import demo_seed, text_only
from bantin.embedded import free_port
from shared.settings import Settings
from shared.tasks import RENDITIONS
from tests.conftest import reset

pytestmark = pytest.mark.e2e
ADMIN = "bt_e2e-admin-token-abcdefghijklmnopqrstuv"
SEED = demo_seed()


class Stack:
    def __init__(
        self, proc: subprocess.Popen[str], lines: queue.Queue[str], home: Path, env: dict[str, str]
    ) -> None:
        self.proc, self.lines, self.home, self.env = proc, lines, home, env
        self.output: list[str] = []
        self.site = self.api = ""

    def wait_for(self, prefix: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"bantin up exited: {self.diagnostics()}"
                continue
            self.output.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line {prefix!r} in {timeout} s: {self.diagnostics()}")

    def ready(self) -> None:
        """Wait for the ready line; note the site's and the API's URLs."""
        line = self.wait_for("bantin ready ")
        fields = dict(part.split("=", 1) for part in line.split()[2:])
        self.site, self.api = fields["site"], fields["api"]

    def stderr_lines(self) -> list[str]:
        path = self.home.parent / "stderr.log"
        return path.read_text().splitlines() if path.exists() else []

    def diagnostics(self) -> str:
        logs = sorted((self.home / "logs").glob("*.log")) if (self.home / "logs").exists() else []
        tails = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in logs)
        return "\n".join(self.output) + "\n" + tails


def other_redis_db(url: str) -> str:
    """The suite's own worker listens on the given Redis database; the stack under test gets
    the next one, so that neither takes the other's tasks."""
    base, _, number = url.rpartition("/")
    return f"{base}/{int(number or 0) + 1}" if number.isdigit() else url + "/1"


@pytest.fixture
def stack(tmp_path: Path, settings: Settings) -> Iterator[Stack]:
    env = {}
    if os.environ.get("BANTIN_DATABASE_URL"):
        # CI's second run: the stack uses the machine's servers, as an operator's would.
        reset(settings)
        env["BANTIN_DATABASE_URL"] = os.environ["BANTIN_DATABASE_URL"]
    if os.environ.get("BANTIN_REDIS_URL"):
        env["BANTIN_REDIS_URL"] = other_redis_db(os.environ["BANTIN_REDIS_URL"])
    with up(tmp_path, env) as running:
        yield running


@contextmanager
def up(tmp_path: Path, given: dict[str, str], *args: str) -> Iterator[Stack]:
    """`bantin up` in a subprocess on free ports, home in `tmp_path`, with the environment's
    BANTIN_ variables replaced by `given`; stopped (SIGTERM) on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTIN_")}
    env.update({"BANTIN_HOME": str(tmp_path / "home"), "BANTIN_ADMIN_TOKEN": ADMIN, **given})
    site_port, api_port = free_port(), free_port()
    stderr = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bantin.cli",
            "up",
            "--home",
            str(tmp_path / "home"),
            "--site-port",
            str(site_port),
            "--api-port",
            str(api_port),
            "--workers",
            "2",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout
    threading.Thread(
        target=lambda: [lines.put(line.rstrip("\n")) for line in out], daemon=True
    ).start()
    running = Stack(proc, lines, tmp_path / "home", env)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()
        stderr.close()


def call(method: str, url: str, body: Any = None, token: str = ADMIN) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def until(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_up_publish_and_stop(stack: Stack) -> None:
    ready = stack.wait_for("bantin ready ")
    fields = dict(part.split("=", 1) for part in ready.split()[2:])
    site, api = fields["site"], fields["api"]
    assert any(line.startswith("demo submitter token (shown once): bt_") for line in stack.output)

    # The demo article is on the home page of a fresh site, with its photos and captions.
    status, home = fetch(site + "/")
    assert status == 200 and SEED["article"]["title"].encode() in home
    demo_path = re.search(rb'href="(/tin-hoat-dong/[a-z0-9-]+-\d+)"', home)
    assert demo_path is not None
    status, demo = fetch(site + demo_path.group(1).decode())
    assert status == 200 and demo.count(b"<picture>") == 7
    caption = SEED["article"]["images"][0]["caption"]
    assert f"<figcaption>{caption}</figcaption>".encode() in demo
    photo = re.search(rb'src="(/media/[0-9a-f]{2}/[0-9a-f]{64}\.jpg)"', demo)
    assert photo is not None
    status, data = fetch(site + photo.group(1).decode())
    assert status == 200 and data[:3] == b"\xff\xd8\xff"

    # A second `bantin up` on the same home refuses instead of corrupting it.
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "bantin.cli",
            "up",
            "--home",
            str(stack.home),
            "--site-port",
            str(free_port()),
            "--api-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        env=stack.env,
        timeout=60,
    )
    assert second.returncode == 1
    assert "another `bantin up`" in second.stderr and "is running on" in second.stderr

    # A submitter posts the seed article; it goes live on its page and in both feeds.
    article = {**text_only(SEED["article"]), "title": SEED["article"]["title"] + " (e2e)"}
    status, accepted = call("POST", api + "/api/v1/articles", article)
    assert status == 202, accepted
    until(
        lambda: call("GET", accepted["links"]["self"])[1]["status"] == "published",
        "the article to be published",
    )
    status, page = fetch(accepted["links"]["page"])
    assert status == 200 and article["title"].encode() in page

    # Once answered, a cached page is answered by the front door, before routing (the runner
    # of `bantin publisher` installs it): the same page, counted in /metrics.
    def door_answers() -> int:
        again = fetch(accepted["links"]["page"])
        assert again[0] == 200 and article["title"].encode() in again[1]
        found = re.search(rb"^bantin_front_door_answers (\S+)$", fetch(site + "/metrics")[1], re.M)
        return int(float(found.group(1))) if found else 0

    until(door_answers, "the front door to answer a cached page")
    for fmt in ("rss", "atom"):

        def entries(fmt: str = fmt) -> Any:
            status, body = fetch(f"{site}/feeds/all.{fmt}")
            parsed = feedparser.parse(body) if status == 200 else None
            return parsed if parsed and len(parsed.entries) == 2 else None

        parsed = until(entries, f"the {fmt} feed to hold both articles")
        assert not parsed.bozo, parsed.get("bozo_exception")
        newest = parsed.entries[0]
        assert unicodedata.normalize("NFC", newest.title) == article["title"]
        assert newest.link == accepted["links"]["page"]

    # A part that dies is restarted by the supervisor, and the site answers again.
    publisher = next(
        p
        for p in psutil.Process(stack.proc.pid).children()
        if "bantin.cli publisher" in " ".join(p.cmdline())
    )
    publisher.kill()
    publisher.wait(10)

    def answers() -> bool:
        try:
            return fetch(site + "/healthz")[0] == 200
        except OSError:  # refused while the new process starts
            return False

    until(answers, "the publisher to be restarted")
    assert any(
        "publisher exited with code -9; restarting it" in line
        for line in (stack.home / "logs" / "publisher.log").read_text().splitlines()
        + stack.stderr_lines()
    )

    # SIGTERM stops every part, embedded servers included.
    tree = psutil.Process(stack.proc.pid).children(recursive=True)
    names = " ".join(" ".join(p.cmdline()) for p in tree)
    for part in ("worker", "beat", "ingest", "publisher"):
        assert f"bantin.cli {part}" in names
    # Two workers: the renditions a first view does without have one of their own.
    assert f"bantin.cli worker --queues {RENDITIONS} " in names
    assert f"--exclude-queues {RENDITIONS}" in names
    if not os.environ.get("BANTIN_DATABASE_URL"):
        assert "postgres -D" in names and "redis-server" in names
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(60) == 0
    time.sleep(0.5)
    left = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"left behind: {[p.cmdline() for p in left]}"
    assert not (stack.home / "run" / "env.json").exists()


def test_bad_setting_stops_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "BANTIN_TIMEZONE": "Mars/Olympus"}
    done = subprocess.run(
        [sys.executable, "-m", "bantin.cli", "up", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "bantin: BANTIN_TIMEZONE: 'Mars/Olympus' is not a known IANA time zone"
    )


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTIN_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = ["up", "--home", str(tmp_path), "--site-port", str(port), "--no-demo"]
        done = subprocess.run(
            [sys.executable, "-m", "bantin.cli", *command],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"port {port} is taken" in done.stderr and "--site-port" in done.stderr
    assert not (tmp_path / "pg").exists()  # initdb never ran


def test_role_without_database_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTIN_")}
    env["BANTIN_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "bantin.cli", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("bantin: BANTIN_DATABASE_URL: not set")
    # Run from another folder than the stack's: said so, with what to do.
    assert f"no running `bantin up` was found in {tmp_path}" in done.stderr


def test_token_commands(settings: Settings, tmp_path: Path) -> None:
    reset(settings)
    env = {**os.environ, **settings.to_env()}
    cli = [sys.executable, "-m", "bantin.cli", "token"]
    made = subprocess.run(
        [*cli, "create", "--name", "Văn phòng", "--role", "admin"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    secret = made.stdout.strip()
    assert secret.startswith("bt_") and len(secret) >= 43
    listing = subprocess.run(
        [*cli, "list"], capture_output=True, text=True, env=env, timeout=60, check=True
    ).stdout
    assert "admin\tactive" in listing and "Văn phòng" in listing and secret not in listing
    token_id = listing.split("\t", 1)[0]
    subprocess.run([*cli, "revoke", token_id], env=env, timeout=60, check=True, capture_output=True)
    again = subprocess.run(
        [*cli, "revoke", token_id], capture_output=True, text=True, env=env, timeout=60
    )
    assert again.returncode == 1 and "no active token" in again.stderr
