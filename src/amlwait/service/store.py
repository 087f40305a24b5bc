"""The waiting service's durable state: waits, their leases, and an outbox of messages to DevOps.

The store is the truth. A replica may be killed (``kill -9``) at any moment; whatever it
committed survives, whatever it had not is redone by itself after a restart or by another
replica once its leases run out. Two backends share one implementation: SQLite (one file,
WAL, one writer at a time via ``BEGIN IMMEDIATE``) and PostgreSQL (several replicas; claims
are ``SELECT … FOR UPDATE SKIP LOCKED`` inside a transaction). The store never reads a
clock: every ``now`` is passed in, so tests inject time. Leases compare the ``now`` of
different replicas, so their clocks must agree to well within a lease.

A wait's life::

    create_wait ──> waiting ──finish_wait──> completing ──delivered("completed")──> done
                    (leased to one replica     (outbox rows for the      (AuthToken deleted)
                     at a time; renewed)        final messages)

* ``claim_waits`` gives a replica the lease of every ``waiting`` wait that is unowned, whose
  lease ran out, or that it already owns. It is one conditional UPDATE of rows selected
  under the write lock (SQLite) or locked with ``SKIP LOCKED`` (PostgreSQL), so two replicas
  never hold the same wait.
* ``save_progress`` and ``finish_wait`` succeed only for the holder of an unexpired lease on
  a ``waiting`` wait. ``finish_wait`` flips the state and inserts the final outbox rows in
  one transaction, so a wait is finished at most once (a partial unique index also allows
  one ``completed`` row per wait).
* The outbox is delivered in order per wait: an item can be claimed only when every earlier
  item of its wait is delivered or dropped; a claim is a lease too.

Exactly-once TaskCompleted, and its one window. The ``completed`` row exists once (above);
only one sender holds its claim at a time; once ``delivered`` commits it is never claimed
again. The window: a sender dies (or loses the database) after Azure DevOps accepted the
POST and before ``delivered`` commits, or it is still sending when its claim runs out.
Then the claim expires and the message is sent again. It is narrowed by two rules for the
sender: the claim lease is longer than the whole HTTP request (timeout included), so a live
sender never races a second one; and ``delivered`` is committed right after the 2xx, before
anything else. What remains is a crash in the milliseconds between the 2xx and that commit.

The AuthToken is sealed with :class:`~amlwait.service.secrets.TokenCipher` (bound to the
wait id), is never part of a :class:`WaitRecord`, and is deleted (set NULL) when the wait
ends. ``create_wait`` refuses a request or callback that contains it.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from amlwait.errors import InputError, ServiceError
from amlwait.service.secrets import SecretKeyError, TokenCipher, cipher_for

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "OUTBOX_KINDS",
    "SCHEMA_VERSION",
    "WAIT_STATES",
    "OutboxItem",
    "PostgresStore",
    "SqliteStore",
    "Store",
    "StoreUnavailableError",
    "WaitRecord",
    "open_store",
]

SCHEMA_VERSION = 1
WAITING, COMPLETING, DONE = "waiting", "completing", "done"
WAIT_STATES = frozenset({WAITING, COMPLETING, DONE})
OUTBOX_KINDS = frozenset({"feed", "log", "completed"})
_PENDING, _DELIVERED, _DROPPED = "pending", "delivered", "dropped"
_IN_CHUNK = 500  # ids per IN (...) list, well under SQLite's parameter limit
_KEY_CHECK = "amlwait-store-key-check"


class StoreUnavailableError(ServiceError):
    """The database failed during an operation (gone, locked too long, disk full)."""


@dataclass(frozen=True)
class WaitRecord:
    wait_id: str
    plan_key: str
    request: dict[str, Any]
    callback: dict[str, str]
    state: str
    outcome: str | None
    result: dict[str, Any] | None
    created_at: float
    deadline: float
    lease_owner: str | None
    lease_until: float


@dataclass(frozen=True)
class OutboxItem:
    item_id: int
    wait_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int


class Store(Protocol):
    def create_wait(
        self,
        *,
        plan_key: str,
        request: dict[str, Any],
        callback: dict[str, Any],
        auth_token: str,
        deadline: float,
        now: float,
    ) -> tuple[WaitRecord, bool]: ...

    def get_wait(self, wait_id: str) -> WaitRecord | None: ...

    def auth_token(self, wait_id: str) -> str | None: ...

    def claim_waits(
        self, owner: str, *, now: float, lease_seconds: float, limit: int = 1000
    ) -> list[WaitRecord]: ...

    def renew_leases(
        self, owner: str, wait_ids: Sequence[str], *, now: float, lease_seconds: float
    ) -> list[str]: ...

    def save_progress(
        self, wait_id: str, owner: str, result: dict[str, Any], *, now: float
    ) -> bool: ...

    def enqueue(self, wait_id: str, kind: str, payload: dict[str, Any], *, now: float) -> None: ...

    def finish_wait(
        self,
        wait_id: str,
        owner: str,
        *,
        outcome: str,
        result: dict[str, Any],
        final: Sequence[tuple[str, dict[str, Any]]],
        now: float,
    ) -> bool: ...

    def claim_outbox(
        self, owner: str, *, now: float, lease_seconds: float, limit: int = 100
    ) -> list[OutboxItem]: ...

    def delivered(self, item_id: int, owner: str, *, now: float) -> None: ...

    def retry_later(
        self, item_id: int, owner: str, *, next_attempt_at: float, error: str
    ) -> None: ...

    def drop(self, item_id: int, owner: str, *, error: str) -> None: ...

    def metrics(self) -> dict[str, int]: ...

    def close(self) -> None: ...


_WAIT_COLUMNS = (
    "wait_id, plan_key, request, callback, state, outcome, result, created_at, deadline, "
    "lease_owner, lease_until"
)
_ITEM_COLUMNS = "item_id, wait_id, kind, payload, attempts"

# One DDL for both backends; {real}, {blob} and {serial} are the only differences.
_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS waits (
    wait_id TEXT PRIMARY KEY,
    plan_key TEXT NOT NULL UNIQUE,
    request TEXT NOT NULL,
    callback TEXT NOT NULL,
    auth_token {blob},
    state TEXT NOT NULL CHECK (state IN ('waiting', 'completing', 'done')),
    outcome TEXT,
    result TEXT,
    created_at {real} NOT NULL,
    deadline {real} NOT NULL,
    lease_owner TEXT,
    lease_until {real} NOT NULL DEFAULT 0,
    updated_at {real} NOT NULL,
    finished_at {real}
);
CREATE INDEX IF NOT EXISTS waits_by_state ON waits (state, deadline);
CREATE TABLE IF NOT EXISTS outbox (
    item_id {serial},
    wait_id TEXT NOT NULL REFERENCES waits (wait_id),
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dropped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {real} NOT NULL,
    claim_owner TEXT,
    claim_until {real} NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at {real} NOT NULL,
    finished_at {real}
);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status, item_id);
CREATE INDEX IF NOT EXISTS outbox_by_wait ON outbox (wait_id, item_id);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_one_completed ON outbox (wait_id)
    WHERE kind = 'completed'
"""


class _Sql:
    """Runs ``?``-style SQL on either backend inside the current transaction."""

    def __init__(self, execute: Callable[[str, tuple[Any, ...]], Any], *, percent: bool) -> None:
        self._execute = execute
        self._percent = percent

    def _cursor(self, sql: str, params: Sequence[Any]) -> Any:
        return self._execute(sql.replace("?", "%s") if self._percent else sql, tuple(params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._cursor(sql, params).fetchall())

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._cursor(sql, params).rowcount)


def _dumps(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def _wait_record(row: Sequence[Any]) -> WaitRecord:
    return WaitRecord(
        wait_id=row[0],
        plan_key=row[1],
        request=json.loads(row[2]),
        callback=json.loads(row[3]),
        state=row[4],
        outcome=row[5],
        result=None if row[6] is None else json.loads(row[6]),
        created_at=float(row[7]),
        deadline=float(row[8]),
        lease_owner=row[9],
        lease_until=float(row[10]),
    )


def _outbox_item(row: Sequence[Any]) -> OutboxItem:
    return OutboxItem(
        item_id=int(row[0]),
        wait_id=row[1],
        kind=row[2],
        payload=json.loads(row[3]),
        attempts=int(row[4]),
    )


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class _SqlStore:
    """The store's logic, written once; subclasses bring the connection and the locking."""

    _skip_locked = ""  # appended to claim SELECTs
    _for_update = ""  # appended to SELECTs that lock one row

    def __init__(self, cipher: TokenCipher) -> None:
        self._cipher = cipher

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[_Sql]:
        raise NotImplementedError
        yield  # pragma: no cover

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _SqlStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ddl_statements(self) -> list[str]:
        raise NotImplementedError

    def _prepare_schema(self, sql: _Sql) -> None:
        for statement in self._ddl_statements():
            sql.run(statement)
        versions = sql.rows("SELECT version FROM schema_version")
        if not versions:
            sql.run("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif max(int(row[0]) for row in versions) > SCHEMA_VERSION:
            raise InputError(
                f"the store has schema version {max(int(row[0]) for row in versions)}, newer "
                f"than this amlwait understands ({SCHEMA_VERSION}): upgrade amlwait"
            )
        check = sql.rows("SELECT value FROM store_meta WHERE name = 'key_check'")
        if not check:
            sealed = self._cipher.seal(_KEY_CHECK, context="key_check")
            sql.run(
                "INSERT INTO store_meta (name, value) VALUES ('key_check', ?)",
                (base64.b64encode(sealed).decode("ascii"),),
            )
        elif self._cipher.open(base64.b64decode(check[0][0]), context="key_check") != _KEY_CHECK:
            raise SecretKeyError("the store's key check does not match")  # pragma: no cover

    # -- waits --------------------------------------------------------------------------------

    def create_wait(
        self,
        *,
        plan_key: str,
        request: dict[str, Any],
        callback: dict[str, Any],
        auth_token: str,
        deadline: float,
        now: float,
    ) -> tuple[WaitRecord, bool]:
        """Store a new wait, or return the one already stored for ``plan_key`` unchanged.

        Raises ValueError if ``request`` or ``callback`` carries the AuthToken (a key named
        AuthToken, or the token's value anywhere): it must only ever be stored sealed.
        """
        request_json, callback_json = _dumps(request), _dumps(callback)
        if any(key.lower() == "authtoken" for key in callback) or (
            auth_token and (auth_token in request_json or auth_token in callback_json)
        ):
            raise ValueError("the AuthToken must not be stored in the request or the callback")
        wait_id = uuid.uuid4().hex
        sealed = self._cipher.seal(auth_token, context=wait_id)
        with self._transaction(write=True) as sql:
            inserted = sql.run(
                "INSERT INTO waits (wait_id, plan_key, request, callback, auth_token, state, "
                "created_at, deadline, lease_until, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'waiting', ?, ?, 0, ?) ON CONFLICT (plan_key) DO NOTHING",
                (wait_id, plan_key, request_json, callback_json, sealed, now, deadline, now),
            )
            row = sql.rows(f"SELECT {_WAIT_COLUMNS} FROM waits WHERE plan_key = ?", (plan_key,))
        return _wait_record(row[0]), inserted == 1

    def get_wait(self, wait_id: str) -> WaitRecord | None:
        with self._transaction(write=False) as sql:
            rows = sql.rows(f"SELECT {_WAIT_COLUMNS} FROM waits WHERE wait_id = ?", (wait_id,))
        return _wait_record(rows[0]) if rows else None

    def auth_token(self, wait_id: str) -> str | None:
        """The wait's AuthToken in clear; None once the wait has ended (or is unknown)."""
        with self._transaction(write=False) as sql:
            rows = sql.rows("SELECT auth_token FROM waits WHERE wait_id = ?", (wait_id,))
        if not rows or rows[0][0] is None:
            return None
        return self._cipher.open(bytes(rows[0][0]), context=wait_id)

    def claim_waits(
        self, owner: str, *, now: float, lease_seconds: float, limit: int = 1000
    ) -> list[WaitRecord]:
        """Lease to ``owner`` the ``waiting`` waits nobody else holds, earliest deadline first."""
        claimable = (
            "state = 'waiting' AND (lease_owner IS NULL OR lease_owner = ? OR lease_until <= ?)"
        )
        records: list[WaitRecord] = []
        with self._transaction(write=True) as sql:
            picked = sql.rows(
                f"SELECT wait_id FROM waits WHERE {claimable} "
                f"ORDER BY deadline, wait_id LIMIT ?{self._skip_locked}",
                (owner, now, limit),
            )
            for ids in _chunks([row[0] for row in picked]):
                rows = sql.rows(
                    f"UPDATE waits SET lease_owner = ?, lease_until = ?, updated_at = ? "
                    f"WHERE wait_id IN ({_marks(ids)}) AND {claimable} RETURNING {_WAIT_COLUMNS}",
                    (owner, now + lease_seconds, now, *ids, owner, now),
                )
                records.extend(_wait_record(row) for row in rows)
        return sorted(records, key=lambda record: (record.deadline, record.wait_id))

    def renew_leases(
        self, owner: str, wait_ids: Sequence[str], *, now: float, lease_seconds: float
    ) -> list[str]:
        """Extend ``owner``'s leases; returns the ids it still holds (the others are lost).

        A lease that ran out but was not taken by anyone is still ``owner``'s and is renewed.
        A wait that is no longer ``waiting`` is not renewed.
        """
        kept: set[str] = set()
        with self._transaction(write=True) as sql:
            for ids in _chunks(list(dict.fromkeys(wait_ids))):
                rows = sql.rows(
                    f"UPDATE waits SET lease_until = ?, updated_at = ? "
                    f"WHERE wait_id IN ({_marks(ids)}) AND lease_owner = ? "
                    f"AND state = 'waiting' RETURNING wait_id",
                    (now + lease_seconds, now, *ids, owner),
                )
                kept.update(row[0] for row in rows)
        return [wait_id for wait_id in dict.fromkeys(wait_ids) if wait_id in kept]

    def save_progress(
        self, wait_id: str, owner: str, result: dict[str, Any], *, now: float
    ) -> bool:
        """Record the latest job states; only by the holder of an unexpired lease."""
        with self._transaction(write=True) as sql:
            changed = sql.run(
                "UPDATE waits SET result = ?, updated_at = ? WHERE wait_id = ? "
                "AND lease_owner = ? AND lease_until > ? AND state = 'waiting'",
                (_dumps(result), now, wait_id, owner, now),
            )
        return changed == 1

    def enqueue(self, wait_id: str, kind: str, payload: dict[str, Any], *, now: float) -> None:
        """Append a message to the wait's outbox; ignored unless the wait is ``waiting``.

        (After ``finish_wait`` the ``completed`` message is last and nothing may follow it.)
        """
        _check_kind(kind)
        with self._transaction(write=True) as sql:
            # Locking the wait row serialises appends per wait, so item ids follow commit order.
            state = sql.rows(
                f"SELECT state FROM waits WHERE wait_id = ?{self._for_update}", (wait_id,)
            )
            if state and state[0][0] == WAITING:
                self._append(sql, wait_id, kind, payload, now)

    def finish_wait(
        self,
        wait_id: str,
        owner: str,
        *,
        outcome: str,
        result: dict[str, Any],
        final: Sequence[tuple[str, dict[str, Any]]],
        now: float,
    ) -> bool:
        """Mark the wait ``completing`` and queue ``final`` in order, in one transaction.

        Only the holder of an unexpired lease on a ``waiting`` wait can do it, so it happens at
        most once; False means someone else finished it (or took it over): do nothing.
        """
        for kind, _ in final:
            _check_kind(kind)
        with self._transaction(write=True) as sql:
            changed = sql.run(
                "UPDATE waits SET state = 'completing', outcome = ?, result = ?, updated_at = ? "
                "WHERE wait_id = ? AND lease_owner = ? AND lease_until > ? AND state = 'waiting'",
                (outcome, _dumps(result), now, wait_id, owner, now),
            )
            if changed != 1:
                return False
            for kind, payload in final:
                self._append(sql, wait_id, kind, payload, now)
        return True

    def purge_finished(self, *, before: float) -> int:
        """Delete the ``done`` waits (and their outbox) that ended before ``before``."""
        with self._transaction(write=True) as sql:
            ids = [
                row[0]
                for row in sql.rows(
                    "SELECT wait_id FROM waits WHERE state = 'done' AND finished_at < ?", (before,)
                )
            ]
            for chunk in _chunks(ids):
                sql.run(f"DELETE FROM outbox WHERE wait_id IN ({_marks(chunk)})", chunk)
                sql.run(f"DELETE FROM waits WHERE wait_id IN ({_marks(chunk)})", chunk)
        return len(ids)

    # -- outbox -------------------------------------------------------------------------------

    @staticmethod
    def _append(sql: _Sql, wait_id: str, kind: str, payload: dict[str, Any], now: float) -> None:
        sql.run(
            "INSERT INTO outbox (wait_id, kind, payload, status, next_attempt_at, created_at) "
            "VALUES (?, ?, ?, 'pending', ?, ?)",
            (wait_id, kind, _dumps(payload), now, now),
        )

    def claim_outbox(
        self, owner: str, *, now: float, lease_seconds: float, limit: int = 100
    ) -> list[OutboxItem]:
        """Claim due messages for ``lease_seconds``: at most the head of each wait's queue.

        The lease must outlast the whole delivery (HTTP timeout included): when it runs out,
        another replica may send the same message again.
        """
        claimable = "status = 'pending' AND next_attempt_at <= ? AND claim_until <= ?"
        items: list[OutboxItem] = []
        with self._transaction(write=True) as sql:
            picked = sql.rows(
                f"SELECT item_id FROM outbox o WHERE {claimable} AND NOT EXISTS ("
                "SELECT 1 FROM outbox e WHERE e.wait_id = o.wait_id AND e.status = 'pending' "
                f"AND e.item_id < o.item_id) ORDER BY item_id LIMIT ?{self._skip_locked}",
                (now, now, limit),
            )
            for ids in _chunks([row[0] for row in picked]):
                rows = sql.rows(
                    f"UPDATE outbox SET claim_owner = ?, claim_until = ? "
                    f"WHERE item_id IN ({_marks(ids)}) AND {claimable} RETURNING {_ITEM_COLUMNS}",
                    (owner, now + lease_seconds, *ids, now, now),
                )
                items.extend(_outbox_item(row) for row in rows)
        return sorted(items, key=lambda item: item.item_id)

    def delivered(self, item_id: int, owner: str, *, now: float) -> None:
        """Azure DevOps accepted the message: never send it again.

        Recorded whoever holds the claim (a delivery is a fact). For ``completed`` the wait
        becomes ``done`` and its AuthToken is deleted, in the same transaction.
        """
        with self._transaction(write=True) as sql:
            rows = sql.rows(
                "UPDATE outbox SET status = 'delivered', claim_owner = ?, claim_until = 0, "
                "finished_at = ? WHERE item_id = ? AND status = 'pending' RETURNING wait_id, kind",
                (owner, now, item_id),
            )
            if rows and rows[0][1] == "completed":
                self._end_wait(sql, rows[0][0], now)

    def retry_later(self, item_id: int, owner: str, *, next_attempt_at: float, error: str) -> None:
        """Release ``owner``'s claim; the item (still its wait's head) is due again later."""
        with self._transaction(write=True) as sql:
            sql.run(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, "
                "claim_owner = NULL, claim_until = 0 "
                "WHERE item_id = ? AND claim_owner = ? AND status = 'pending'",
                (next_attempt_at, error[:2000], item_id, owner),
            )

    def drop(self, item_id: int, owner: str, *, error: str) -> None:
        """Give up on ``owner``'s claimed item; the next item of its wait becomes due.

        Meant for non-essential messages (feed lines). Dropping a ``completed`` message ends
        the wait without a TaskCompleted (e.g. the plan no longer exists): ``done``, token gone.
        """
        with self._transaction(write=True) as sql:
            # drop() is given no clock: the moment the item was last due stands in for "now".
            rows = sql.rows(
                "UPDATE outbox SET status = 'dropped', attempts = attempts + 1, last_error = ?, "
                "claim_until = 0, finished_at = next_attempt_at "
                "WHERE item_id = ? AND claim_owner = ? AND status = 'pending' "
                "RETURNING wait_id, kind, next_attempt_at",
                (error[:2000], item_id, owner),
            )
            if rows and rows[0][1] == "completed":
                self._end_wait(sql, rows[0][0], float(rows[0][2]))

    @staticmethod
    def _end_wait(sql: _Sql, wait_id: str, now: float) -> None:
        sql.run(
            "UPDATE waits SET state = 'done', auth_token = NULL, lease_owner = NULL, "
            "lease_until = 0, finished_at = ?, updated_at = ? WHERE wait_id = ?",
            (now, now, wait_id),
        )

    def metrics(self) -> dict[str, int]:
        """Counts: ``active_waits`` (waiting), ``completing_waits``, ``done_waits``,
        ``outbox_pending`` (of which ``outbox_retrying`` failed at least once),
        ``outbox_delivered``, ``outbox_dropped``."""
        with self._transaction(write=False) as sql:
            states = dict(sql.rows("SELECT state, COUNT(*) FROM waits GROUP BY state"))
            statuses = dict(sql.rows("SELECT status, COUNT(*) FROM outbox GROUP BY status"))
            retrying = sql.rows(
                "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND attempts > 0"
            )[0][0]
        return {
            "active_waits": int(states.get(WAITING, 0)),
            "completing_waits": int(states.get(COMPLETING, 0)),
            "done_waits": int(states.get(DONE, 0)),
            "outbox_pending": int(statuses.get(_PENDING, 0)),
            "outbox_retrying": int(retrying),
            "outbox_delivered": int(statuses.get(_DELIVERED, 0)),
            "outbox_dropped": int(statuses.get(_DROPPED, 0)),
        }


def _check_kind(kind: str) -> None:
    if kind not in OUTBOX_KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}: use one of {sorted(OUTBOX_KINDS)}")


class SqliteStore(_SqlStore):
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
            raise InputError(f"cannot open the store {path!r}: {_one_line(error)}") from None
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
            raise InputError(f"cannot open the store {path!r}: {_one_line(error)}") from None

    def _ddl_statements(self) -> list[str]:
        ddl = _DDL.format(real="REAL", blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT")
        return [statement for statement in ddl.split(";") if statement.strip()]

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[_Sql]:
        with self._lock:
            if self._closed:
                raise StoreUnavailableError("the store is closed")
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as error:
                raise StoreUnavailableError(f"the store failed: {_one_line(error)}") from error
            try:
                yield _Sql(self._conn.execute, percent=False)
            except BaseException as error:
                if self._conn.in_transaction:  # SQLite may already have rolled back
                    self._conn.execute("ROLLBACK")
                if isinstance(error, sqlite3.OperationalError):
                    raise StoreUnavailableError(f"the store failed: {_one_line(error)}") from error
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreUnavailableError(f"the store failed: {_one_line(error)}") from error

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


class PostgresStore(_SqlStore):
    """PostgreSQL through psycopg 3: one connection per store, guarded by a lock.

    Claims lock their rows with ``FOR UPDATE SKIP LOCKED``, so replicas claiming at the same
    time get disjoint sets without waiting on each other. A broken connection is replaced
    on the next call (the failed call raises :class:`StoreUnavailableError`).
    """

    _skip_locked = " FOR UPDATE SKIP LOCKED"
    _for_update = " FOR UPDATE"

    def __init__(self, url: str, cipher: TokenCipher) -> None:
        super().__init__(cipher)
        try:
            import psycopg
        except ImportError:
            raise InputError(
                "a postgresql:// store needs psycopg: pip install 'psycopg[binary]>=3.1'"
            ) from None
        self._psycopg = psycopg
        self._url = url
        self._lock = threading.Lock()
        self._closed = False
        shown = _redacted(url)
        try:
            self._conn: psycopg.Connection[tuple[Any, ...]] = self._connect()
        except psycopg.Error as error:
            raise InputError(f"cannot reach the store at {shown}: {_one_line(error)}") from None
        try:
            with self._transaction(write=True) as sql:
                # Replicas starting together must not race on CREATE TABLE.
                sql.rows("SELECT pg_advisory_xact_lock(4242604201)")
                self._prepare_schema(sql)
        except InputError:
            self._conn.close()
            raise
        except StoreUnavailableError as error:
            self._conn.close()
            raise InputError(f"cannot use the store at {shown}: {error}") from None

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return self._psycopg.connect(self._url, autocommit=True, connect_timeout=10)

    def _ddl_statements(self) -> list[str]:
        ddl = _DDL.format(
            real="DOUBLE PRECISION",
            blob="BYTEA",
            serial="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        )
        return [statement for statement in ddl.split(";") if statement.strip()]

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[_Sql]:
        psycopg = self._psycopg
        with self._lock:
            if self._closed:
                raise StoreUnavailableError("the store is closed")
            try:
                if self._conn.closed or self._conn.broken:
                    self._conn = self._connect()
                with self._conn.transaction():
                    yield _Sql(self._conn.execute, percent=True)
            except psycopg.OperationalError as error:
                raise StoreUnavailableError(f"the store failed: {_one_line(error)}") from error

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def _redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _sqlite_path(url: str) -> str | None:
    if url in ("sqlite://", "sqlite:///:memory:"):
        return ":memory:"
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return url[len("sqlite:///") :]
    return None


def open_store(url: str, *, secret_key: str | None) -> Store:
    """Open (creating its tables if missing) the store at ``url``.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``
    (private to this store), or ``postgresql://user@host:5432/db`` (any libpq URI; add
    ``?options=-csearch_path%3Dschema`` for a schema). ``secret_key`` None reads
    ``AMLWAIT_SERVICE_SECRET``; without either, nothing is opened. Raises InputError (one
    line, never the password) for a bad URL, an unreachable database, or a wrong secret.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        path = _sqlite_path(url)
        if path is None:
            raise InputError(
                f"bad store URL {url!r}: use sqlite:///path/to/waits.db (three slashes)"
            )
        return SqliteStore(path, cipher_for(secret_key))
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url, cipher_for(secret_key))
    raise InputError(
        f"unsupported store URL {_redacted(url)!r}: use sqlite:///path/to/waits.db "
        "or postgresql://user@host:5432/database"
    )
