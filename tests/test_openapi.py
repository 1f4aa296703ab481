"""schemathesis against the OpenAPI document the ingest service serves: generated requests
(valid and hostile) must never get a 5xx, and every answer must match the document."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bantin.embedded import free_port
from tests.conftest import ADMIN_TOKEN, reset

LOGS: list[Path] = []
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
]


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
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{ingest_url}/api/v1/openapi.json",
            "--checks",
            ",".join(CHECKS),
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
    errors = "\n".join(
        line
        for log in LOGS
        for line in log.read_text().splitlines()
        if "ERROR" in line or "Error" in line or "  File" in line
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:] + errors[-6000:]


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
