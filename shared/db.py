"""Connections to PostgreSQL and the migrations runner.

Services use an async pool, workers and the command line a sync one; both come from here so
that connection settings live in one place. Migrations are ordered SQL files applied under an
advisory lock, so several processes starting at once apply each file exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every bantin process.
MIGRATION_LOCK = 0x62616E74696E  # "bantin"
CONNECT_TIMEOUT = 5
# Autocommit: a lone statement commits at once, and `async with conn.transaction()` is a real
# transaction rather than a savepoint inside an implicit one (which would commit only when the
# connection goes back to the pool: after the task that needs the row was enqueued).
_KWARGS = {"row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT, "autocommit": True}


AsyncPool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]


class Unanswered(psycopg.OperationalError):
    """PostgreSQL took longer than the pool's bound to answer (paused, or overloaded)."""


def _bounded(seconds: float) -> type[psycopg.AsyncConnection[DictRow]]:
    """A connection class whose every wait for the server ends after `seconds`.

    PostgreSQL cannot enforce a timeout while it is stopped (SIGSTOP, a frozen VM): the kernel
    still accepts our bytes, so neither statement_timeout nor TCP keep-alives ever fire, and a
    request would wait for as long as the pause lasts. psycopg sends every query and reads every
    answer through `wait()`, which takes a timeout; cancelling the caller instead would make
    psycopg ask the silent server to cancel the query, and wait for that too. A connection that
    timed out is in an unknown state: it is closed, and the pool replaces it."""

    class Bounded(psycopg.AsyncConnection[DictRow]):
        async def wait(
            self,
            gen: Any,
            interval: float = 0.1,
            timeout: float | None = None,  # noqa: ASYNC109 (psycopg's own signature)
        ) -> Any:
            started = time.monotonic()
            try:
                return await super().wait(gen, interval, seconds if timeout is None else timeout)
            except psycopg.OperationalError as err:
                if time.monotonic() - started < seconds or self.closed:
                    raise
                self.pgconn.finish()
                raise Unanswered(f"PostgreSQL did not answer in {seconds:g} s") from err

    return Bounded


class BoundedPool(AsyncPool):
    """A pool whose connections wait at most `bound` seconds for any answer (see _bounded).

    Waiting for a free connection is another matter: when PostgreSQL is merely busy (a burst
    of submissions, every connection in use), a request queues for up to `timeout`, as it
    should. Once PostgreSQL has been found away (`trouble()`, called by the services'
    middleware when it answers 503), that wait is cut to `bound` for TROUBLE_SECONDS, so that a
    request does not queue for connections that cannot come; and the idle connections are
    tested once, so that those a restarted server broke are replaced at once rather than each
    failing one more request."""

    def __init__(self, *args: Any, bound: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bound = bound
        self.troubled_until = 0.0
        self._idle_check: asyncio.Task[None] | None = None

    def trouble(self) -> None:
        self.troubled_until = time.monotonic() + TROUBLE_SECONDS
        if self._idle_check is None or self._idle_check.done():
            self._idle_check = asyncio.get_running_loop().create_task(self._check_idle())

    async def _check_idle(self) -> None:
        try:
            await self.check()
        except Exception:  # still away: the next trouble checks again
            log.debug("pool check failed", exc_info=True)

    async def getconn(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (psycopg_pool's own signature)
    ) -> psycopg.AsyncConnection[DictRow]:
        if timeout is not None:
            return await super().getconn(timeout)
        # In slices of `bound`: a request that began to wait before the trouble was found
        # gives up at the end of its slice, not after the whole timeout.
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            try:
                return await super().getconn(max(0.01, min(self.bound, left)))
            except PoolTimeout:
                if time.monotonic() < self.troubled_until or left <= self.bound:
                    raise


TROUBLE_SECONDS = 10.0


def async_pool(url: str, *, max_size: int = 10, bound: float | None = None) -> AsyncPool:
    """A pool for an aiohttp service; open it in a cleanup_ctx, never at import time.

    With `bound` (seconds), a BoundedPool: no request waits longer than that for a connection
    attempt or any one answer from the server, nor for a free connection while the server is
    known to be away: it gets an OperationalError instead, which the services answer 503
    (shared/web.py)."""
    options: dict[str, Any] = {
        "min_size": 1,
        "max_size": max_size,
        "open": False,
        "timeout": 10,
        "name": "bantin-async",
    }
    if bound is None:
        return AsyncConnectionPool(
            url, connection_class=psycopg.AsyncConnection[DictRow], kwargs=_KWARGS, **options
        )
    return BoundedPool(
        url,
        connection_class=_bounded(bound),
        kwargs={**_KWARGS, "connect_timeout": max(2, round(bound))},
        bound=bound,
        **options,
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
