"""The SQLite backend: one file (or ``:memory:``), one writer at a time."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from amlwait.errors import InputError
from amlwait.service.secrets import TokenCipher
from amlwait.service.store.base import StoreUnavailableError
from amlwait.service.store.sql import DDL, Sql, SqlStore, one_line


class SqliteStore(SqlStore):
    """One SQLite file (or ``:memory:``), one connection guarded by a lock.

    Several processes may open the same file; ``BEGIN IMMEDIATE`` makes every write
    transaction (claims included) exclusive, so SQLite needs no row locks.
    """

    def __init__(self, path: str, cipher: TokenCipher) -> None:
        super().__init__(cipher)
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._conn = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise InputError(f"cannot open the store {path!r}: {one_line(error)}") from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit (e.g. "delivered") survives a power cut, not only kill -9.
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._transaction(write=True) as sql:
                self._prepare_schema(sql)
        except StoreUnavailableError as error:
            self._conn.close()
            raise InputError(f"cannot open the store {path!r}: {error}") from None
        except (sqlite3.Error, InputError) as error:
            self._conn.close()
            if isinstance(error, InputError):
                raise
            raise InputError(f"cannot open the store {path!r}: {one_line(error)}") from None

    def _ddl_statements(self) -> list[str]:
        ddl = DDL.format(real="REAL", blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT")
        return [statement for statement in ddl.split(";") if statement.strip()]

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Sql]:
        with self._lock:
            if self._closed:
                raise StoreUnavailableError("the store is closed")
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as error:
                raise StoreUnavailableError(f"the store failed: {one_line(error)}") from error
            try:
                yield Sql(self._conn.execute, percent=False)
            except BaseException as error:
                if self._conn.in_transaction:  # SQLite may already have rolled back
                    self._conn.execute("ROLLBACK")
                if isinstance(error, sqlite3.OperationalError):
                    raise StoreUnavailableError(f"the store failed: {one_line(error)}") from error
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreUnavailableError(f"the store failed: {one_line(error)}") from error

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
