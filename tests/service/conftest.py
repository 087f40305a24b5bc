"""Fixtures for the service's store: the same tests run on SQLite and on PostgreSQL.

PostgreSQL is ``$AMLWAIT_TEST_POSTGRES_URL`` (default: postgres on 127.0.0.1:5432, database
``test``); every test gets its own schema, dropped afterwards. The PostgreSQL variant is
skipped only when no server answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amlwait.service.secrets import generate_secret
from amlwait.service.store import Store, open_store

POSTGRES_URL = os.environ.get(
    "AMLWAIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
STORE_SECRET = generate_secret()

_postgres_problem: list[str] = []  # memo: why PostgreSQL cannot be used ("" when it can)


def _postgres_unavailable() -> str:
    if not _postgres_problem:
        try:
            import psycopg

            psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
            _postgres_problem.append("")
        except Exception as error:
            reason = " ".join(str(error).split())
            _postgres_problem.append(f"no PostgreSQL answers at {POSTGRES_URL}: {reason}")
    return _postgres_problem[0]


def _with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty store; every replica opened on it shares the same database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'waits.db'}"
        return
    problem = _postgres_unavailable()
    if problem:
        pytest.skip(problem)
    import psycopg

    schema = f"amlwait_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_search_path(POSTGRES_URL, schema)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def open_replica(store_url: str) -> Iterator[Callable[[], Store]]:
    """Opens one more store (a "replica") on ``store_url``; all are closed at the end."""
    opened: list[Store] = []

    def open_one() -> Store:
        store = open_store(store_url, secret_key=STORE_SECRET)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_replica: Callable[[], Store]) -> Store:
    return open_replica()
