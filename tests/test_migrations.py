from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services.ingest.desk import labels
from shared import db, models


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


# Each closed list of values, declared once in shared/models.py, and the columns whose CHECK
# constraint must allow exactly it (SQL cannot import Python: this holds the two together).
DECLARED = {
    ("articles", "status"): models.STATUSES,
    ("articles", "body_format"): models.BODY_FORMATS,
    ("images", "role"): models.ROLES,
    ("renditions", "format"): models.RENDITION_FORMATS,
    ("tokens", "role"): models.TOKEN_ROLES,
    ("accounts", "role"): models.ACCOUNT_ROLES,
}


def test_check_constraints_allow_exactly_the_declared_values(fresh_database: str) -> None:
    db.migrate(fresh_database)
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute(
            """SELECT c.conrelid::regclass::text, a.attname, pg_get_constraintdef(c.oid)
                 FROM pg_constraint c
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
                WHERE c.contype = 'c' AND cardinality(c.conkey) = 1"""
        ).fetchall()
    allowed: dict[tuple[str, str], set[str]] = {}
    for table, column, definition in rows:
        # PostgreSQL writes `x IN (...)` back as `(x = ANY (ARRAY['a'::text, 'b'::text]))`.
        if "ANY (ARRAY[" in definition:
            allowed[(table, column)] = set(re.findall(r"'([^']*)'::text", definition))
    for column, values in DECLARED.items():
        assert allowed.get(column) == set(values), column
    assert len(set(models.STATUSES)) == len(models.STATUSES)


def test_the_desks_labels_name_every_declared_value() -> None:
    assert list(labels.STATUS) == list(models.STATUSES)  # the filter lists them in this order
    assert set(labels.ROLE) == set(models.ACCOUNT_ROLES)
    assert set(labels.SETTLED) == set(models.STATUSES) - {"processing"}
