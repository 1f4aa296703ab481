"""schemathesis against the OpenAPI document the ingest service serves: generated requests
(valid and hostile) must never get a 5xx, and every answer must match the document."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bantin.embedded import free_port
from tests.conftest import ADMIN_TOKEN, reset

LOGS: list[Path] = []
# Every check schemathesis has, but these, each for a stated reason (the README says them too).
EXCLUDED = {
    # Rules no schema can state: the category must exist, If-Match must name the article's
    # current version, a photo part must hold a photo, a text must keep something once
    # control characters are removed. Their refusals are documented answers (422, 412, 415).
    "positive_data_acceptance": "rules beyond the schema",
    # DELETE unpublishes: the article stays readable by its owner, with status "unpublished".
    "use_after_free": "DELETE unpublishes, it does not erase",
    # PATCH without If-Match answers 428 Precondition Required (RFC 6585), not a 400.
    "missing_required_header": "428 for a missing If-Match",
}
# A request that breaks the document may also be refused for its size (413): a JSON body is
# capped (BANTIN_MAX_JSON_BYTES) before any field is looked at, so a text over its maxLength in
# characters can be over the cap in bytes first.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
"""


@pytest.fixture(scope="module")
def ingest_url(
    base_env: dict[str, str], settings: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The ingest service as production runs it: `bantin ingest` in its own process."""
    reset(settings)
    from bantin import bootstrap

    bootstrap.prepare(settings, demo=False)  # the admin token from BANTIN_ADMIN_TOKEN
    port = free_port()
    log = tmp_path_factory.mktemp("ingest") / "ingest.log"
    LOGS.append(log)
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bantin.cli", "ingest", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **base_env, "BANTIN_RATE_LIMIT_PER_MINUTE": "1000000"},
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                break
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.1)
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    out.close()


def test_api_conforms_to_its_document(ingest_url: str, tmp_path: Any) -> None:
    """The schemathesis command line, as an API's user would run it (its pytest plugin does
    not support pytest 9 yet). Deterministic, bounded in examples and time."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{ingest_url}/api/v1/openapi.json",
            "--checks",
            "all",
            *(["--exclude-checks", ",".join(EXCLUDED)] if EXCLUDED else []),
            "--header",
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--max-examples",
            "30",
            "--seed",
            "20220112",
            "--generation-deterministic",
            "--request-timeout",
            "10",
            "--no-color",
            "--continue-on-failure",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    report = tmp_path / "schemathesis.txt"
    report.write_text(done.stdout + done.stderr)
    errors = "\n".join(
        line
        for log in LOGS
        for line in log.read_text().splitlines()
        if "ERROR" in line or "Error" in line or "  File" in line
    )
    assert done.returncode == 0, (
        f"full report: {report}\n" + done.stdout[-6000:] + done.stderr[-2000:] + errors[-6000:]
    )


async def test_document_says_what_the_server_does(api: Any) -> None:
    """The four places where the hand-written document once disagreed with the server, and
    the examples that schemathesis's examples phase needs."""
    doc = await (await api.get("/api/v1/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    article = schemas["ArticleIn"]["properties"]
    assert all(article[name]["minLength"] == 1 for name in ("title", "category", "body"))
    assert schemas["LinkIn"]["properties"]["url"]["format"] == "uri"
    assert schemas["LinkIn"]["properties"]["url"]["pattern"].startswith("^[Hh][Tt][Tt][Pp]")
    slug = schemas["CategoryIn"]["properties"]["slug"]
    assert slug["type"] == "string" and "anyOf" not in slug  # null is refused, as the server does
    patch = doc["paths"]["/api/v1/articles/{id}"]["patch"]
    assert "412" in patch["responses"] and "428" in patch["responses"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                content = operation["requestBody"]["content"]["application/json"]
                assert "example" in content, f"{method.upper()} {path} has no example"
    from jsonschema import Draft202012Validator

    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)


def test_every_request_gets_an_access_line(ingest_url: str) -> None:
    """`bantin ingest` logs one line per request: method, path, status, duration, request id."""
    request = urllib.request.Request(
        ingest_url + "/api/v1/nothing", headers={"X-Request-ID": "access-line-test"}
    )
    try:
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as err:
        assert err.code == 404
    pattern = re.compile(r"\[access-line-test\] aiohttp\.access: GET /api/v1/nothing 404 [\d.]+ ms")
    for _ in range(100):  # written once the answer is sent
        if any(pattern.search(log.read_text()) for log in LOGS):
            return
        time.sleep(0.05)
    raise AssertionError("no access line: " + LOGS[-1].read_text()[-2000:])


def test_access_line_as_json(caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from shared.logs import JsonFormatter, RequestIdFilter
    from shared.web import AccessLogger

    logger = logging.getLogger("aiohttp.access")
    request = make_mocked_request("PATCH", "/api/v1/articles/7", headers={"X-Request-ID": "r1"})
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        AccessLogger(logger, "").log(request, web.Response(status=412), 0.0123)
    (record,) = caplog.records
    RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter("ingest").format(record))
    assert {k: line[k] for k in ("method", "path", "status", "duration_ms", "request_id")} == {
        "method": "PATCH",
        "path": "/api/v1/articles/7",
        "status": 412,
        "duration_ms": 12.3,
        "request_id": "r1",
    }
