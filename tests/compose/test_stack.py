"""The real docker-compose.yml, built, scaled and broken on purpose (`make compose-test`).

The image is built from ./Dockerfile and the stack runs from ./docker-compose.yml unchanged; a
test .env gives only the proxy's port, the public URL on it, and the database password. In order
(the tests share one stack and build on each other):

1. the image: small, non-root, no compiler;
2. `up --wait` with 3 workers and 2 publishers: every service healthy;
3. articles with photos submitted through the proxy, with a token made inside the stack; their
   pages, feeds and photos served through it; the proxy spreads pages over both publishers;
4. a worker (of the first views or of the other renditions) killed in the middle of a photo
   render and a publisher killed under page load: every accepted article is published once and
   every photo gets all its renditions, readers see no error but those in flight on the killed
   publisher, and both containers come back by their restart policy;
5. Redis and PostgreSQL restarted: the stack recovers by itself, nothing accepted is lost, the
   counters keep their totals;
6. health checks that fail when a role is broken (its database away), not only when it is gone;
7. `down` then `up`: the data is kept; `down -v` removes it.

Figures (start time, image size, memory per role, pages per second with 1 and 2 publishers) go
to the run's summary and var/compose-figures.json.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.load import LoadResult, run_load
from shared.photos.render import MAX_SIDE, WIDTHS
from shared.tasks import RENDER_IMAGE, RENDER_REST
from tests.compose.conftest import FIGURES, ROOT
from tests.photos import jpeg

# Each step may wait minutes on a loaded machine; the whole run is bounded by run.sh.
pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

PROJECT = "bantin-compose-test"
IMAGE = os.environ.get("BANTIN_IMAGE", "bantin:0.1.0")
SCALE = ("--scale", "worker=3", "--scale", "publisher=2")
SIZE_GOAL_MB = 250
CATEGORY = {"slug": "tin-hoat-dong", "name": "Tin hoạt động"}
# What a reader may see when a publisher is killed under them: the requests in flight on it
# (nginx retries a GET on the other publisher unless the answer had begun).
IN_FLIGHT = {"502", "504", "ServerDisconnectedError", "ClientOSError", "ClientPayloadError"}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# How long the proxy keeps the replicas' addresses (its resolver's `valid`, deploy/nginx.conf):
# after a scale, readers' requests go to the replicas running now once that has passed twice.
_VALID = re.search(r"resolver .* valid=(\d+)s", (ROOT / "deploy" / "nginx.conf").read_text())
assert _VALID is not None, "deploy/nginx.conf: the resolver's valid=Ns"
SETTLE = 2 * int(_VALID.group(1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def until(check: Callable[[], Any], what: str, timeout: float = 120, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done.stdout


def megabytes(text: str) -> float:
    """'123.4MiB' -> 129.4 (MB)."""
    match = re.fullmatch(r"([\d.]+)\s*([KMG]i?B|B)", text.strip())
    assert match, text
    scale = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    return round(float(match.group(1)) * scale[match.group(2)] / 1e6, 1)


def multipart(fields: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body: name -> (filename or "", bytes, content type)."""
    boundary = uuid.uuid4().hex
    out = bytearray()
    for name, (filename, data, ctype) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        out += f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


@dataclass
class Stack:
    folder: Path
    port: int
    token: str = ""
    # Every article the API accepted (202): id -> title.
    accepted: dict[int, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        command = ["docker", "compose", "-p", PROJECT, "--env-file", str(self.folder / ".env")]
        done = subprocess.run(
            [*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        out = self.compose("ps", "--all", "--format", "json")
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [r for r in rows if service is None or r["Service"] == service]

    def unhealthy(self) -> list[str]:
        """What is not as it should be: a long-running service not running and healthy, or
        migrate not exited 0."""
        wrong = []
        for row in self.containers():
            if row["Service"] == "migrate":
                if row["State"] != "exited" or row.get("ExitCode") != 0:
                    wrong.append(f"{row['Name']}: {row['State']} {row.get('ExitCode')}")
            elif row["State"] != "running" or row.get("Health") != "healthy":
                wrong.append(f"{row['Name']}: {row['State']} {row.get('Health')}")
        return wrong

    def up(self, *extra: str) -> float:
        start = time.monotonic()
        args = ("up", "-d", "--no-build", "--wait", "--wait-timeout", "300", *SCALE, *extra)
        try:
            self.compose(*args)
        except AssertionError as err:
            # The Docker engine copies the image's folder into a new named volume when a
            # container first mounts it; several containers mounting the new media volume at
            # once can race there ("failed to mkdir .../_data/public: file exists", seen once
            # in CI). The volume is filled by then: a second `up` starts the rest.
            if "file exists" not in str(err):
                raise
            self.compose(*args)
        return round(time.monotonic() - start, 1)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        ctype: str = "application/json",
        token: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": ctype} if body is not None else {}
        if token or self.token:
            headers["Authorization"] = f"Bearer {token or self.token}"
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with NO_PROXY.open(req, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path)

    def api(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        body = json.dumps(payload).encode() if payload is not None else None
        status, _, data = self.request(method, path, body)
        return status, json.loads(data) if data else None

    def submit(self, title: str, photos: int = 1, size: tuple[int, int] = (800, 600)) -> int:
        """Posts an article with `photos` photos through the proxy; returns its id. (Each photo
        becomes a dozen renditions, AVIF among them: seconds of a loaded machine's CPU.)"""
        images = [
            {"part": f"p{i}", "caption": f"Ảnh {i + 1} của {title}", "role": "gallery"}
            for i in range(photos)
        ]
        article = {
            "title": title,
            "category": CATEGORY["slug"],
            "summary": "Bài viết thử của bộ kiểm tra docker compose.",
            "body": "<p>Nội dung bài viết thử, có ảnh.</p>",
            "author": "Bộ kiểm tra",
            "images": images,
        }
        fields = {"article": ("", json.dumps(article).encode(), "application/json")}
        for i in range(photos):
            colour = (40 * i % 256, 120, 200)
            fields[f"p{i}"] = (f"p{i}.jpg", jpeg(*size, colour=colour), "image/jpeg")
        body, ctype = multipart(fields)
        status, _, data = self.request("POST", "/api/v1/articles", body, ctype)
        assert status == 202, data[:500]
        accepted = json.loads(data)
        self.accepted[accepted["id"]] = title
        return int(accepted["id"])

    def statuses(self) -> dict[int, str]:
        found = {}
        for article_id in self.accepted:
            status, body = self.api("GET", f"/api/v1/articles/{article_id}")
            found[article_id] = body["status"] if status == 200 else f"HTTP {status}"
        return found

    def all_published(self, timeout: float = 300) -> None:
        until(
            lambda: all(s == "published" for s in self.statuses().values()),
            "every accepted article to be published",
            timeout=timeout,
            every=2,
        )

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", "--no-log-prefix", service, timeout=120)

    def memory(self) -> dict[str, float]:
        """MB per role: the largest container of each service."""
        ids = {row["ID"]: row["Service"] for row in self.containers() if row["State"] == "running"}
        out = docker("stats", "--no-stream", "--format", "{{json .}}", *ids)
        per_role: dict[str, float] = {}
        for line in out.splitlines():
            row = json.loads(line)
            service = next(s for i, s in ids.items() if i.startswith(row["ID"][:12]))
            used = megabytes(row["MemUsage"].split("/")[0])
            per_role[service] = max(per_role.get(service, 0.0), used)
        return dict(sorted(per_role.items()))

    def load(self, path: str = "/", **options: Any) -> LoadResult:
        return run_load(self.base + path, **options)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("compose")
    port = free_port()
    # Only ports and secrets: everything else is the compose file's and bantin's defaults.
    (folder / ".env").write_text(
        f"POSTGRES_PASSWORD={secrets.token_hex(16)}\n"
        f"BANTIN_HTTP_PORT=127.0.0.1:{port}\n"
        f"BANTIN_PUBLIC_URL=http://127.0.0.1:{port}\n"
    )
    stack = Stack(folder, port)
    stack.compose("down", "-v", "--remove-orphans", timeout=300)  # what a failed run left
    try:
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", "--tail", "40", timeout=120, check=False)
        (ROOT / "var").mkdir(exist_ok=True)
        (ROOT / "var" / "compose-test.log").write_text(logs)
        stack.compose("down", "-v", "--remove-orphans", timeout=300, check=False)


# --- 1. the image ---------------------------------------------------------------------------


def test_image_is_small_unprivileged_and_has_no_compiler() -> None:
    info = json.loads(docker("image", "inspect", IMAGE))[0]
    size_mb = round(info["Size"] / 1e6)
    FIGURES["image_size_mb"] = size_mb
    assert info["Config"]["User"] not in ("", "0", "root", "0:0"), info["Config"]["User"]
    found = docker(
        "run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
        "id -u; for c in cc gcc g++ c++ clang make ld as; do command -v $c; done; true",
    ).split()  # fmt: skip
    assert found[0] != "0", "the image's user is root"
    assert found[1:] == [], f"compilers in the image: {found[1:]}"
    assert size_mb <= SIZE_GOAL_MB, f"{size_mb} MB > {SIZE_GOAL_MB} MB"


# --- 2. up, scaled --------------------------------------------------------------------------


def test_up_scaled_every_service_healthy(stack: Stack) -> None:
    FIGURES["start_seconds"] = stack.up()
    assert stack.unhealthy() == []
    running = Counter(row["Service"] for row in stack.containers() if row["State"] == "running")
    assert running["worker"] == 3 and running["publisher"] == 2, running
    assert running["renditions"] == 1, running
    assert running["beat"] == 1 and running["ingest"] == 1 and running["proxy"] == 1
    FIGURES["memory_mb_idle"] = stack.memory()


# --- 3. articles with photos through the proxy ----------------------------------------------


def test_articles_with_photos_through_the_proxy(stack: Stack) -> None:
    # A token made inside the stack, as an operator does.
    out = stack.compose(
        "exec", "-T", "ingest", "bantin", "token", "create", "--name", "compose-test",
        "--role", "admin",
    )  # fmt: skip
    stack.token = re.search(r"\bbt_\S+", out).group(0)  # type: ignore[union-attr]
    status, body = stack.api("POST", "/api/v1/categories", CATEGORY)
    assert status == 201, body

    ids = [stack.submit(f"Bài thử số {n} qua proxy", photos=2) for n in range(1, 4)]
    stack.all_published()
    status, article = stack.api("GET", f"/api/v1/articles/{ids[0]}")
    assert status == 200 and len(article["images"]) == 2
    page_path = article["links"]["page"].removeprefix(stack.base)
    status, _, page = stack.get(page_path)
    assert status == 200 and "Bài thử số 1 qua proxy".encode() in page
    photo = re.search(rb'src="(/media/[0-9a-f]{2}/[0-9a-f]{64}\.\w+)"', page)
    assert photo is not None, "no photo on the page"
    status, headers, data = stack.get(photo.group(1).decode())
    assert status == 200 and len(data) > 1000
    assert "immutable" in headers.get("Cache-Control", "")
    # Originals (with their EXIF) are never served.
    original = article["images"][0]["renditions"][0]["url"].replace("/media/", "/media/../")
    assert stack.get(original.removeprefix(stack.base))[0] in (400, 403, 404)
    # The feeds list them once their (coalesced) rebuild has run.
    for fmt in ("rss", "atom", "json"):

        def listed(fmt: str = fmt) -> bool:
            status, _, feed = stack.get(f"/feeds/all.{fmt}")
            titles = (f"Bài thử số {n} qua proxy".encode() for n in range(1, 4))
            return status == 200 and all(title in feed for title in titles)

        until(listed, f"the {fmt} feed to list the articles", 120, 2)


def test_the_proxy_spreads_pages_over_both_publishers(stack: Stack) -> None:
    marker = f"/?spread={uuid.uuid4().hex}"
    for _ in range(40):
        assert stack.get(marker)[0] == 200
    upstreams = set()
    for line in stack.logs("proxy").splitlines():
        if marker in line and line.startswith("{"):
            upstreams.add(json.loads(line)["upstream"].split(":")[0])
    publishers = {
        ip
        for row in stack.containers("publisher")
        for ip in docker(
            "inspect", "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", row["ID"],
        ).split()
    }  # fmt: skip
    assert len(upstreams) == 2 and upstreams <= publishers, (upstreams, publishers)


# --- 4. killed under work -------------------------------------------------------------------


ACTIVE = (
    "import json; from shared.settings import Settings; from workers.app import configure; "
    "print(json.dumps(configure(Settings.from_env()).control.inspect(timeout=3).active()))"
)


RENDERS = (RENDER_IMAGE, RENDER_REST)
# The services whose containers run a worker: every queue but the renditions, and theirs.
WORKER_SERVICES = ("worker", "renditions")


def rendering_worker(stack: Stack) -> str | None:
    """A worker container in the middle of a photo render (a first view's on a `worker`, the
    other renditions' on a `renditions` one), or None: Celery's own `inspect active`, asked from
    inside the stack; a node is named worker-<pid>@<container's hostname>."""
    out = stack.compose("exec", "-T", "ingest", "python", "-c", ACTIVE, timeout=60, check=False)
    try:
        active = json.loads(out.strip().splitlines()[-1]) or {}
    except (IndexError, ValueError):
        return None
    busy = {
        node.split("@", 1)[1]
        for node, tasks in active.items()
        if any(task["name"] in RENDERS for task in tasks)
    }
    for service in WORKER_SERVICES:
        for row in stack.containers(service):
            if row["ID"][:12] in busy:
                return str(row["ID"])
    return None


def expected_widths(width: int) -> set[int]:
    """The widths of a photo's full set of renditions (shared/photos/render.py): each standard
    width below its own, and its own (capped)."""
    return {w for w in WIDTHS if w < width} | {min(width, MAX_SIDE)}


def complete(stack: Stack, article_id: int, width: int) -> bool:
    """Every photo of the article has its full set: every width in every format (AVIF too:
    the image's libvips writes it), not only what a first view needs."""
    status, article = stack.api("GET", f"/api/v1/articles/{article_id}")
    if status != 200 or not article["images"]:
        return False
    for image in article["images"]:
        have = {(r["width"], r["format"]) for r in image["renditions"]}
        if have != {(w, f) for w in expected_widths(width) for f in ("jpeg", "webp", "avif")}:
            return False
    return True


def crash(container: str) -> None:
    """SIGKILL to the container's first process, from outside: a crash, not a `docker stop`
    (after which Docker would not apply the restart policy)."""
    pid = int(docker("inspect", "--format", "{{.State.Pid}}", container).strip())
    assert pid > 0, container
    os.kill(pid, signal.SIGKILL)


def restarts(container: str) -> int:
    return int(docker("inspect", "--format", "{{.RestartCount}}", container).strip())


KILL_PHOTO = (3000, 2000)  # the other renditions take seconds: a render is easy to catch


def test_killed_worker_and_publisher_come_back_and_nothing_is_lost(stack: Stack) -> None:
    before = {row["ID"]: restarts(row["ID"]) for row in stack.containers()}
    # Photos sent while readers load pages.
    load: dict[str, LoadResult] = {}
    reader = threading.Thread(
        target=lambda: load.setdefault("r", stack.load(concurrency=8, duration=40)),
        daemon=True,
    )
    reader.start()
    sent = [
        stack.submit(f"Bài có ảnh số {n}, gửi khi đang có sự cố", size=KILL_PHOTO)
        for n in range(1, 5)
    ]
    victim = until(lambda: rendering_worker(stack), "a worker to start a render", 120, 0.2)
    crash(victim)
    FIGURES["killed_while_rendering"] = next(
        row["Service"] for row in stack.containers() if row["ID"] == victim
    )
    time.sleep(3)
    publisher = stack.containers("publisher")[0]["ID"]
    crash(publisher)
    reader.join(120)

    stack.all_published(timeout=600)
    # Every photo gets all its renditions, the one whose render was cut off too: its task was
    # never acknowledged, and the sweep sends it again (within REST_RESEND_AFTER and a sweep).
    started = time.monotonic()
    until(
        lambda: all(complete(stack, article_id, KILL_PHOTO[0]) for article_id in sent),
        "every photo to get all its renditions after the kill",
        600,
        3,
    )
    FIGURES["renditions_complete_after_the_kill_s"] = round(time.monotonic() - started)
    # Readers saw pages, and no error but the requests in flight on the killed publisher.
    result = load["r"]
    errors = {k: v for k, v in result.statuses.items() if k != "200"}
    FIGURES["reader_errors_when_a_publisher_is_killed"] = errors or "none"
    assert set(errors) <= IN_FLIGHT and sum(errors.values()) <= 8, result.statuses
    assert result.ok > 100, result.statuses
    # Both came back by their restart policy, and all is healthy again.
    for container in (victim, publisher):
        until(lambda c=container: restarts(c) > before[c], f"{container} to restart", 120)
    until(lambda: not stack.unhealthy(), "every service to be healthy again", 240, 2)
    # Every accepted article was published exactly once.
    published = Counter(re.findall(r"published article (\d+)", stack.logs("worker")))
    assert {int(i): n for i, n in published.items() if int(i) in stack.accepted} == {
        i: 1 for i in stack.accepted
    }

    # ... and is in the feed once, when its (coalesced) rebuild has run.
    def feed_titles() -> list[str]:
        status, _, feed = stack.get("/feeds/all.json")
        return [item["title"] for item in json.loads(feed)["items"]] if status == 200 else []

    titles = until(
        lambda: (
            (t := feed_titles()) and all(t.count(x) == 1 for x in stack.accepted.values()) and t
        ),
        "the feed to list every article once",
        120,
        2,
    )
    assert len(titles) == len(set(titles))


# --- 5. Redis and PostgreSQL restarted ------------------------------------------------------


def total_views(stack: Stack) -> int:
    """The site's page-view total (asked again while the answer is a 503 with Retry-After)."""

    def ask() -> int | None:
        status, body = stack.api("GET", "/api/v1/stats")
        assert status in (200, 503), body
        return int(body["total"]) if status == 200 else None

    return int(until(lambda: (n := ask()) is not None and n + 1, "the statistics", 60, 1)) - 1


def test_redis_and_postgres_restarts_are_survived(stack: Stack) -> None:
    until(lambda: total_views(stack) > 0, "page views to be counted", 60)
    views = total_views(stack)
    stack.compose("restart", "redis", timeout=120)
    stack.compose("restart", "postgres", timeout=180)
    # Submissions while the stack finds its feet again: each is accepted or refused with a 503.
    accepted_during = 0
    for n in range(1, 6):
        try:
            stack.submit(f"Bài gửi sau khi khởi động lại số {n}", photos=0)
            accepted_during += 1
        except AssertionError as err:
            assert "503" in str(err) or "unavailable" in str(err).lower(), err
    until(lambda: not stack.unhealthy(), "every service to be healthy again", 300, 2)
    # A client that honours Retry-After gets through: connections that the restart cut are
    # each answered once with a 503, then dropped from the pools.
    for n in range(1, 4):
        for attempt in range(12):
            try:
                stack.submit(f"Bài gửi khi đã hồi phục số {n}", photos=0)
                break
            except AssertionError as err:
                assert "503" in str(err) and attempt < 11, err
                time.sleep(1)
    stack.all_published(timeout=300)
    # The page-view total survives (Redis's append-only file, PostgreSQL's copy).
    assert total_views(stack) >= views
    FIGURES["articles_accepted_while_recovering"] = accepted_during


# --- 6. health checks see a broken role -----------------------------------------------------


def test_health_checks_fail_when_a_role_is_broken(stack: Stack) -> None:
    stack.compose("stop", "postgres", timeout=180)
    try:
        for service in ("ingest", "publisher"):
            container = stack.containers(service)[0]["ID"]
            done = subprocess.run(
                ["docker", "exec", container, "bantin-healthcheck", "--ready"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 1 and "unhealthy" in done.stdout, done.stdout
    finally:
        stack.compose("start", "postgres", timeout=180)
    stack.compose("stop", "redis", timeout=120)
    try:
        for service in ("worker", "renditions", "beat"):
            container = stack.containers(service)[0]["ID"]
            done = subprocess.run(
                ["docker", "exec", container, "bantin-healthcheck"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            # Unhealthy, or the role gave up on its broker and its container is restarting.
            assert done.returncode != 0, done.stdout
            if done.returncode == 1:
                role = "worker" if service == "renditions" else service
                assert f"unhealthy: {role}" in done.stdout, done.stdout
    finally:
        stack.compose("start", "redis", timeout=120)
    until(lambda: not stack.unhealthy(), "every service to be healthy again", 300, 2)


# --- figures under load -----------------------------------------------------------------------


def test_pages_per_second_with_one_and_two_publishers(stack: Stack) -> None:
    stack.up()  # two publishers, every service healthy
    # A warm-up: connections the restarts above cut are each answered once with the
    # documented 503 (and then dropped); the measurements below must then see none.
    warm = stack.load(concurrency=16, duration=3)
    assert set(warm.statuses) <= {"200", "503"}, warm.statuses
    FIGURES["answers_503_after_the_restarts"] = warm.statuses.get("503", 0)
    runs: dict[str, LoadResult] = {}
    loader = threading.Thread(
        target=lambda: runs.setdefault("two", stack.load(concurrency=16, duration=10))
    )
    loader.start()
    time.sleep(4)
    FIGURES["memory_mb_under_load"] = stack.memory()  # while the pages are being read
    loader.join(60)
    two = runs["two"]
    stack.compose("up", "-d", "--no-build", "--wait", "--scale", "worker=3",
                  "--scale", "publisher=1", timeout=300)  # fmt: skip
    # Not the removed publisher's address, which the proxy may still hold (each request sent
    # there waits out proxy_connect_timeout): one publisher, measured.
    time.sleep(SETTLE)
    stack.get("/")
    one = stack.load(concurrency=16, duration=10)
    stack.up()
    time.sleep(SETTLE)  # both publishers' addresses
    stack.get("/")
    again = stack.load(concurrency=16, duration=10)  # A B A: the machine's drift falls on both
    with_two = (two.rps + again.rps) / 2
    FIGURES["pages_per_second"] = {
        "1 publisher": round(one.rps),
        "2 publishers": round(with_two),
        "ratio": round(with_two / one.rps, 2),
    }
    assert one.errors == 0 and two.errors == 0 and again.errors == 0, (one.statuses, two.statuses)


# --- 7. down, up, down -v -------------------------------------------------------------------


def test_down_and_up_keep_the_data_and_down_v_removes_it(stack: Stack) -> None:
    some = next(iter(stack.accepted))
    status, article = stack.api("GET", f"/api/v1/articles/{some}")
    assert status == 200
    photo = article["images"][0]["renditions"][0]["url"].removeprefix(stack.base)
    stack.compose("down", timeout=300)
    stack.up()
    assert stack.statuses() == {i: "published" for i in stack.accepted}
    assert stack.get(photo)[0] == 200
    stack.compose("down", "-v", timeout=300)
    left = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}")
    assert left.split() == []
