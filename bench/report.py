"""What a run leaves behind: the machine's description, a JSON file per benchmark, a table."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SHORT_LIST = 10  # lists up to this long are shown in the table; longer ones only in JSON


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        info["memory_bytes"] = psutil.virtual_memory().total
    except ImportError:
        pass
    return info


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def rows(results: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(metric, value) rows for the table: scalars, dicts one level down, short lists."""
    for key, value in results.items():
        if key == "params":
            continue
        if isinstance(value, dict):
            for sub, inner in value.items():
                unit = "x" if key == "ratios" else (_unit(key) or _unit(sub))
                shown = _value(inner, unit)
                if shown is not None:
                    yield f"{key}.{sub}", shown
        else:
            shown = _value(value, _unit(key))
            if shown is not None:
                yield key, shown


def table(name: str, description: str, results: dict[str, Any], extra: str = "") -> str:
    params = results.get("params") or {}
    head = f"{name}" + (f" - {description}" if description else "")
    lines = [head]
    if params or extra:
        bits = [f"{k}={v}" for k, v in params.items()]
        if extra:
            bits.append(extra)
        lines.append("  " + ", ".join(bits))
    body = list(rows(results))
    width = max((len(k) for k, _ in body), default=10)
    vwidth = max((len(v) for _, v in body), default=5)
    lines.append("  " + "-" * (width + vwidth + 3))
    for metric, value in body:
        lines.append(f"  {metric:<{width}}   {value:>{vwidth}}")
    return "\n".join(lines)


def _unit(key: str) -> str:
    for suffix, unit in (("_ms", "ms"), ("_s", "s"), ("_rps", "req/s"), ("_bytes", "B")):
        if key.endswith(suffix):
            return unit
    return ""


def _value(value: Any, unit: str) -> str | None:
    suffix = unit if unit in ("", "x") else f" {unit}"
    if value is None:
        return "-"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int | float):
        return _number(value) + suffix
    if isinstance(value, list):
        if len(value) <= SHORT_LIST and all(isinstance(v, int | float | None) for v in value):
            return ", ".join("-" if v is None else _number(v) for v in value) + suffix
        return f"({len(value)} values in the JSON file)"
    return None


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"
