"""One real `bantin up` stack (embedded PostgreSQL and Redis, a Celery worker, beat, both
services) for the fault tests and the bad-input corpus, started once per module."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import psutil
import pytest

from tests.test_e2e import Stack, up

# The first run of CI gives no BANTIN_ URLs: the stack starts its own servers, which the fault
# tests may kill. The second run points at the machine's servers, which nobody here may kill.
EXTERNAL = bool(os.environ.get("BANTIN_DATABASE_URL") or os.environ.get("BANTIN_REDIS_URL"))


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if EXTERNAL:
        pytest.skip("needs the embedded servers of `bantin up` (BANTIN_*_URL are set)")
    tmp = tmp_path_factory.mktemp("faults")
    with up(tmp, {"BANTIN_LOG_LEVEL": "INFO"}, "--no-demo") as running:
        running.ready()
        yield running


def database_url(stack: Stack) -> str:
    url: str = json.loads((stack.home / "run" / "env.json").read_text())["BANTIN_DATABASE_URL"]
    return url


def part(stack: Stack, needle: str) -> psutil.Process:
    """The supervisor's child whose command line holds `needle` (a role or a server)."""
    for child in psutil.Process(stack.proc.pid).children():
        try:
            if needle in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no running part {needle!r}")
