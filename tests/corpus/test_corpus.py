"""The bad-input corpus (cases.yaml) against a live `bantin up` stack: every case answered with
its expected status, no 5xx, no hang, problem details for the API's 4xx."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.corpus.http import Answer, exchange, request
from tests.photos import jpeg
from tests.test_e2e import ADMIN, Stack, call

pytestmark = pytest.mark.e2e

CASES: list[dict[str, Any]] = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())
CATEGORY = "kiem-thu"
UNKNOWN = "bt_" + "x" * 43
PHOTOS = {
    "jpeg": lambda: jpeg(64, 48),
    "truncated-jpeg": lambda: jpeg(640, 480)[:4000],
    "broken-gif": lambda: b"GIF89a\x10\x00\x10\x00\x80\x00\x00" + b"\x00" * 7,
}


@pytest.fixture(scope="module")
def corpus(live_stack: Stack) -> dict[str, str]:
    """The stack, with a category and a published article the cases can name."""
    api = live_stack.api
    status, _ = call("POST", api + "/api/v1/categories", {"slug": CATEGORY, "name": "Kiểm thử"})
    assert status in (201, 409)
    status, made = call(
        "POST",
        api + "/api/v1/articles",
        {"title": "Bài để sửa", "category": CATEGORY, "body": "<p>Nội dung</p>"},
    )
    assert status == 202, made
    deadline = time.monotonic() + 60
    while True:
        request = urllib.request.Request(
            made["links"]["self"], headers={"Authorization": f"Bearer {ADMIN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            etag, article = r.headers["ETag"], json.load(r)
        if article["status"] == "published":
            break
        assert time.monotonic() < deadline, "the corpus's article was not published in 60 s"
        time.sleep(0.3)
    return {
        "article": str(made["id"]),
        "etag": etag,
        "category": CATEGORY,
        "long_category": "a" * 10_001,
        "long_slug": "a" * 300,
        "long_token": "x" * 5000,
        "long_query": "vien" * 2500,
        "site_port": live_stack.site.rsplit(":", 1)[1],
        "api_port": live_stack.api.rsplit(":", 1)[1],
    }


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(corpus: dict[str, str], case: dict[str, Any]) -> None:
    port = int(corpus["api_port" if case["service"] == "api" else "site_port"])
    raw = request(
        case.get("method", "GET"),
        _fill(case["path"], corpus),
        port,
        _headers(case, corpus),
        _body(case, corpus),
    )
    expected = case["expect"] if isinstance(case["expect"], list) else [case["expect"]]
    answer: Answer | None = None
    for _ in range(case.get("times", 1)):
        try:
            answer = exchange(port, raw, half_close=case.get("half_close", False))
        except ConnectionError:
            answer = None  # the server closed without answering (a body cut short)
        assert answer is None or answer.status < 500, _say(case, answer)
    status = answer.status if answer is not None else 0
    assert status in expected, _say(case, answer)
    if answer is None:
        return
    is_api = case["service"] == "api" or case["path"].startswith("/api/")
    if is_api and 400 <= status < 500:
        assert answer.headers.get("content-type", "").startswith("application/problem+json"), _say(
            case, answer
        )
        problem = json.loads(answer.body)
        assert problem["status"] == status and problem["title"]
        if "not_title" in case:
            assert problem["title"] != case["not_title"], _say(case, answer)
    if status == 429:
        assert answer.headers.get("retry-after"), _say(case, answer)


def _say(case: dict[str, Any], answer: Answer | None) -> str:
    if answer is None:
        return f"{case['name']}: no answer"
    return f"{case['name']}: {answer.status} {answer.body[:400]!r}"


def _fill(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def _filled(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _fill(value, values)
    if isinstance(value, list):
        return [_filled(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _filled(v, values) for k, v in value.items()}
    return value


def _headers(case: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    headers = {k: _fill(str(v), values) for k, v in (case.get("headers") or {}).items()}
    auth = case.get("auth", "none")
    if auth != "none":
        headers["Authorization"] = f"Bearer {ADMIN if auth == 'admin' else UNKNOWN}"
    if "json" in case:
        headers.setdefault("Content-Type", "application/json")
    if "multipart" in case:
        headers.setdefault("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    return headers


BOUNDARY = "corpus-boundary-7d1f"


def _body(case: dict[str, Any], values: dict[str, str]) -> bytes:
    if "json" in case:
        return json.dumps(_filled(case["json"], values), ensure_ascii=False).encode()
    if "text" in case:
        return str(case["text"]).encode("utf-8", "surrogateescape")
    if "nested" in case:
        return ("[" * case["nested"] + "]" * case["nested"]).encode()
    if "multipart" in case:
        spec = case["multipart"]
        if "nested" in spec:
            article = ("[" * spec["nested"] + "]" * spec["nested"]).encode()
        else:
            article = json.dumps(_filled(spec["article"], values), ensure_ascii=False).encode()
        parts = [(b'name="article"', b"application/json", article)]
        for name, kind in spec.get("photos", {}).items():
            disposition = f'name="{name}"; filename="{name}.jpg"'.encode()
            parts.append((disposition, b"image/jpeg", PHOTOS[kind]()))
        out = b""
        for disposition, content_type, data in parts:
            out += (
                f"--{BOUNDARY}\r\n".encode()
                + b"Content-Disposition: form-data; "
                + disposition
                + b"\r\nContent-Type: "
                + content_type
                + b"\r\n\r\n"
                + data
                + b"\r\n"
            )
        return out + f"--{BOUNDARY}--\r\n".encode()
    return b""
