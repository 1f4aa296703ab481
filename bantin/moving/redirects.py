"""`bantin redirects load FILE`: old addresses from other sources (a CSV of `old_path,new_path`),
checked whole before anything is written, then written in one transaction."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from bantin.moving.progress import Report
from shared.redirects import key

BATCH = 5000


class BadCsv(Exception):
    """The file cannot be read as a CSV at all."""


def rows(path: Path) -> Iterator[tuple[int, str, str] | str]:
    """(line, old key, new path) for each row, or what is wrong with it."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fp:
            for number, row in enumerate(csv.reader(fp), start=1):
                if not row or (
                    number == 1 and [c.strip() for c in row] == ["old_path", "new_path"]
                ):
                    continue
                try:
                    yield _row(number, row)
                except ValueError as err:
                    yield str(err)
    except UnicodeDecodeError as err:
        raise BadCsv(f"{path} is not UTF-8 text: {err}") from err
    except csv.Error as err:
        raise BadCsv(f"{path} is not a CSV file: {err}") from err
    except OSError as err:
        raise BadCsv(f"{path}: {err.strerror or err}") from err


def _row(number: int, row: list[str]) -> tuple[int, str, str]:
    if len(row) != 2:
        raise ValueError(f"line {number}: expected 2 columns (old_path,new_path), found {len(row)}")
    old, new = (c.strip() for c in row)
    old_key = key(old)
    if not old_key or old_key == "/":
        raise ValueError(f"line {number}: {old!r} is not an old address (a path or a URL)")
    parts = urlsplit(new)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if not target.startswith("/") or target.startswith("//"):
        raise ValueError(f"line {number}: {new!r} is not a path on this site (like /tin-tuc/)")
    if key(target) == old_key:
        raise ValueError(f"line {number}: {old!r} would redirect to itself")
    return number, old_key, target


def load(database_url: str, path: Path, report: Report) -> None:
    """Check every row, then write them all or none."""
    bad: list[str] = []
    count = 0
    try:
        for _ in _checked(path, bad):
            count += 1
    finally:
        report.set_total(count)
    if bad:
        for reason in bad:
            report.fail(str(path), reason)
        return
    with psycopg.connect(database_url) as conn, conn.transaction():
        chunk: list[tuple[str, str]] = []
        for _, old, new in _checked(path, bad):
            chunk.append((old, new))
            if len(chunk) >= BATCH:
                _write(conn, chunk, report)
                chunk = []
        _write(conn, chunk, report)


def _checked(path: Path, bad: list[str]) -> Iterator[tuple[int, str, str]]:
    for row in rows(path):
        if isinstance(row, str):
            bad.append(row)
        else:
            yield row


def _write(conn: psycopg.Connection[Any], chunk: list[tuple[str, str]], report: Report) -> None:
    if not chunk:
        return
    cur = conn.execute(
        "INSERT INTO redirects (old_path, new_path) SELECT * FROM unnest(%s::text[], %s::text[])"
        " ON CONFLICT (old_path) DO NOTHING",
        ([o for o, _ in chunk], [n for _, n in chunk]),
    )
    report.done(cur.rowcount)
    report.skip("already present", len(chunk) - cur.rowcount)
    report.tick()
