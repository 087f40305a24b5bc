"""The SQLite backend: one file (or ``:memory:``), one writer at a time."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from amlwait.errors import InputError
from amlwait.service.secrets import TokenCipher
from amlwait.service.store.base import StoreUnavailableError
from amlwait.service.store.sql import DDL, Sql, SqlStore, one_line

HIGH_WATER_SUFFIX = ".hwm"


def _read_mark(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as file:
            return int(file.read().strip() or "0")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable: as if absent (it is rewritten below)


def _write_mark(path: str, count: int) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as file:
        file.write(f"{count}\n")
    os.replace(temporary, path)


class SqliteStore(SqlStore):
    """One SQLite file (or ``:memory:``), one connection guarded by a lock.

    Several processes may open the same file; ``BEGIN IMMEDIATE`` makes every write
    transaction (claims included) exclusive, so SQLite needs no row locks.
    """

    def __init__(self, path: str, cipher: TokenCipher) -> None:
        super().__init__(cipher)
        self._mark_path: str | None = None
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
                created = self._waits_created(sql)
            self._check_high_water_mark(path, created)
        except StoreUnavailableError as error:
            self._conn.close()
            raise InputError(f"cannot open the store {path!r}: {error}") from None
        except (sqlite3.Error, InputError) as error:
            self._conn.close()
            if isinstance(error, InputError):
                raise
            raise InputError(f"cannot open the store {path!r}: {one_line(error)}") from None

    # -- the high-water mark -------------------------------------------------------------
    #
    # A lost or corrupted WAL, or an older copy of the file put back, rolls the database back
    # silently: it opens fine, with fewer waits (the probe saw ~34 become 1), and those waits
    # never call back. The database cannot notice by itself (its own counter is rolled back
    # with it), so the count of waits ever created is also kept in a small file next to it,
    # written after each commit. The file can lag the database (a crash between the two
    # writes, a power cut), never lead it: a database behind its file lost commits.

    def _check_high_water_mark(self, path: str, created: int) -> None:
        self._mark_path = None if path == ":memory:" else path + HIGH_WATER_SUFFIX
        if self._mark_path is None:
            return
        recorded = _read_mark(self._mark_path)
        if recorded is not None and created < recorded:
            raise InputError(
                f"the store {path!r} has lost waits: it has created {created} but "
                f"{self._mark_path!r} records {recorded}, so its latest commits are gone (a "
                "lost or corrupted -wal file, or an older copy of the file); their pipelines "
                "will never be called back. Restore the store, or delete the .hwm file to "
                "accept the loss"
            )
        if recorded is None or created > recorded:
            _write_mark(self._mark_path, created)

    def _committed_waits_created(self, count: int) -> None:
        if self._mark_path is not None:
            # The mark may lag (it is checked as a lower bound); the wait is stored anyway.
            with contextlib.suppress(OSError):
                _write_mark(self._mark_path, count)

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
