"""Connections to PostgreSQL and the migrations runner.

Services use an async pool, workers and the command line a sync one; both come from here so
that connection settings live in one place. Migrations are ordered SQL files applied under an
advisory lock, so several processes starting at once apply each file exactly once.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every bantin process.
MIGRATION_LOCK = 0x62616E74696E  # "bantin"
CONNECT_TIMEOUT = 5
# Autocommit: a lone statement commits at once, and `async with conn.transaction()` is a real
# transaction rather than a savepoint inside an implicit one (which would commit only when the
# connection goes back to the pool: after the task that needs the row was enqueued).
_KWARGS = {"row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT, "autocommit": True}


AsyncPool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]


def async_pool(url: str, *, max_size: int = 10) -> AsyncPool:
    """A pool for an aiohttp service; open it in a cleanup_ctx, never at import time."""
    return AsyncConnectionPool(
        url,
        connection_class=psycopg.AsyncConnection[DictRow],
        min_size=1,
        max_size=max_size,
        open=False,
        timeout=10,
        kwargs=_KWARGS,
        name="bantin-async",
    )


def connect(url: str, **kwargs: Any) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT, **kwargs)


def wait_for(url: str, timeout: float = 30.0) -> None:
    """Block until PostgreSQL accepts connections, or raise the last error after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration shipped with bantin, in order."""
    folder = resources.files("shared") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text("utf-8")) for name in names]


def migrate(url: str) -> list[str]:
    """Apply the migrations not applied yet; returns their versions (empty when up to date)."""
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log.info("applied migration %s", version)
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied
