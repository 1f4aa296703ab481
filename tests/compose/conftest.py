"""The real compose stack (`make compose-test`): skipped unless BANTIN_COMPOSE_TEST=1, which
tests/compose/run.sh sets once an engine answers and the images are built."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# Figures the tests measure, shown at the end of the run and written to var/compose-figures.json.
FIGURES: dict[str, Any] = {}
ROOT = Path(__file__).resolve().parent.parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("BANTIN_COMPOSE_TEST") == "1":
        return
    skip = pytest.mark.skip(
        reason="needs a Docker engine and builds images for minutes: run `make compose-test`"
    )
    for item in items:
        if item.get_closest_marker("compose"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("compose stack figures")
    for key, value in FIGURES.items():
        terminalreporter.write_line(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    out = ROOT / "var" / "compose-figures.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(FIGURES, indent=2, ensure_ascii=False) + "\n")
