from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared import db


@pytest.fixture
def fresh_database(backends: dict[str, str]) -> Iterator[str]:
    """An empty database on the suite's server, dropped afterwards."""
    server = backends["database_url"]
    name = f"bantin_mig_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    params = conninfo_to_dict(server)
    params["dbname"] = name
    yield make_conninfo(**params)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def versions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_migrate_twice_is_a_no_op(fresh_database: str) -> None:
    shipped = [v for v, _ in db.migration_files()]
    assert shipped == sorted(shipped) and shipped[0] == "0001_init"
    assert db.migrate(fresh_database) == shipped
    assert db.migrate(fresh_database) == []
    assert versions(fresh_database) == shipped


def test_concurrent_migrations_apply_each_file_once(fresh_database: str) -> None:
    results: list[list[str]] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        barrier.wait()
        try:
            results.append(db.migrate(fresh_database))
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    shipped = [v for v, _ in db.migration_files()]
    # Exactly one process applied the migrations; the others found them done.
    assert sorted(results, key=len) == [[]] * 5 + [shipped]
    assert versions(fresh_database) == shipped
