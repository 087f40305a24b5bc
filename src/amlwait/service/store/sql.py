"""The store written once in SQL, for both backends: the schema and every operation.

:class:`SqlStore` implements :class:`~amlwait.service.store.base.Store` (whose docstrings
state the semantics) with ``?``-style SQL; a backend subclass brings the connection, the
transactions and the row locking (``_skip_locked``, ``_for_update``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from amlwait.errors import InputError
from amlwait.service.secrets import SecretKeyError, TokenCipher
from amlwait.service.store.base import (
    COMPLETING,
    DONE,
    OUTBOX_KINDS,
    SCHEMA_VERSION,
    WAITING,
    OutboxItem,
    StoreUnavailableError,
    WaitRecord,
)

_PENDING, _DELIVERED, _DROPPED = "pending", "delivered", "dropped"
_IN_CHUNK = 500  # ids per IN (...) list, well under SQLite's parameter limit
_KEY_CHECK = "amlwait-store-key-check"


_WAIT_COLUMNS = (
    "wait_id, plan_key, request, callback, state, outcome, result, created_at, deadline, "
    "lease_owner, lease_until"
)
# The same columns without the progress document (which holds every job's state).
_WAIT_COLUMNS_NO_RESULT = _WAIT_COLUMNS.replace(", result,", ", NULL,")
_ITEM_COLUMNS = "item_id, wait_id, kind, payload, attempts"

# One DDL for both backends; {real}, {blob} and {serial} are the only differences.
DDL = """
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


class Sql:
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


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class SqlStore:
    """The store's logic, written once; subclasses bring the connection and the locking."""

    _skip_locked = ""  # appended to claim SELECTs
    _for_update = ""  # appended to SELECTs that lock one row

    def __init__(self, cipher: TokenCipher) -> None:
        self._cipher = cipher

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Sql]:
        raise NotImplementedError
        yield  # pragma: no cover

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ddl_statements(self) -> list[str]:
        raise NotImplementedError

    def _prepare_schema(self, sql: Sql) -> None:
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
        if not sql.rows("SELECT value FROM store_meta WHERE name = 'waits_created'"):
            # A store from before the counter: it starts at the waits it holds.
            sql.run(
                "INSERT INTO store_meta (name, value) "
                "SELECT 'waits_created', CAST(COUNT(*) AS TEXT) FROM waits"
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
            created = None
            if inserted == 1:
                sql.run(
                    "UPDATE store_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                    "WHERE name = 'waits_created'"
                )
                created = self._waits_created(sql)
        if created is not None:
            self._committed_waits_created(created)
        return _wait_record(row[0]), inserted == 1

    @staticmethod
    def _waits_created(sql: Sql) -> int:
        rows = sql.rows("SELECT value FROM store_meta WHERE name = 'waits_created'")
        return int(rows[0][0]) if rows else 0

    def _committed_waits_created(self, count: int) -> None:
        """Told, after the commit, how many waits this store has ever created."""

    def waits_created(self) -> int:
        with self._transaction(write=False) as sql:
            return self._waits_created(sql)

    def probe(self, *, now: float) -> None:
        """Write a row and read it back (see :meth:`Store.probe`)."""
        value = repr(now)
        with self._transaction(write=True) as sql:
            sql.run("DELETE FROM store_meta WHERE name = 'health_probe'")
            sql.run("INSERT INTO store_meta (name, value) VALUES ('health_probe', ?)", (value,))
            read = sql.rows("SELECT value FROM store_meta WHERE name = 'health_probe'")
        if not read or read[0][0] != value:
            raise StoreUnavailableError("the store did not read back what it wrote")

    def get_wait(self, wait_id: str, *, with_result: bool = True) -> WaitRecord | None:
        columns = _WAIT_COLUMNS if with_result else _WAIT_COLUMNS_NO_RESULT
        with self._transaction(write=False) as sql:
            rows = sql.rows(f"SELECT {columns} FROM waits WHERE wait_id = ?", (wait_id,))
        return _wait_record(rows[0]) if rows else None

    def auth_token(self, wait_id: str) -> str | None:
        with self._transaction(write=False) as sql:
            rows = sql.rows("SELECT auth_token FROM waits WHERE wait_id = ?", (wait_id,))
        if not rows or rows[0][0] is None:
            return None
        return self._cipher.open(bytes(rows[0][0]), context=wait_id)

    def claim_waits(
        self,
        owner: str,
        *,
        now: float,
        lease_seconds: float,
        limit: int = 1000,
        skip: Collection[str] = (),
    ) -> list[WaitRecord]:
        claimable = (
            "state = 'waiting' AND (lease_owner IS NULL OR lease_owner = ? OR lease_until <= ?)"
        )
        records: list[WaitRecord] = []
        with self._transaction(write=True) as sql:
            # Only ids are read here; the skipped ones (at most len(skip) of them) are left
            # out before the UPDATE, so they cost neither a write nor a decoded row.
            picked = sql.rows(
                f"SELECT wait_id FROM waits WHERE {claimable} "
                f"ORDER BY deadline, wait_id LIMIT ?{self._skip_locked}",
                (owner, now, limit + len(skip)),
            )
            skipped = frozenset(skip)
            wanted = [row[0] for row in picked if row[0] not in skipped][:limit]
            for ids in _chunks(wanted):
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
        with self._transaction(write=True) as sql:
            changed = sql.run(
                "UPDATE waits SET result = ?, updated_at = ? WHERE wait_id = ? "
                "AND lease_owner = ? AND lease_until > ? AND state = 'waiting'",
                (_dumps(result), now, wait_id, owner, now),
            )
        return changed == 1

    def enqueue(self, wait_id: str, kind: str, payload: dict[str, Any], *, now: float) -> None:
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
    def _append(sql: Sql, wait_id: str, kind: str, payload: dict[str, Any], now: float) -> None:
        sql.run(
            "INSERT INTO outbox (wait_id, kind, payload, status, next_attempt_at, created_at) "
            "VALUES (?, ?, ?, 'pending', ?, ?)",
            (wait_id, kind, _dumps(payload), now, now),
        )

    def claim_outbox(
        self, owner: str, *, now: float, lease_seconds: float, limit: int = 100
    ) -> list[OutboxItem]:
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
        with self._transaction(write=True) as sql:
            rows = sql.rows(
                "UPDATE outbox SET status = 'delivered', claim_owner = ?, claim_until = 0, "
                "finished_at = ? WHERE item_id = ? AND status = 'pending' RETURNING wait_id, kind",
                (owner, now, item_id),
            )
            if rows and rows[0][1] == "completed":
                self._end_wait(sql, rows[0][0], now)

    def retry_later(self, item_id: int, owner: str, *, next_attempt_at: float, error: str) -> None:
        with self._transaction(write=True) as sql:
            sql.run(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, "
                "claim_owner = NULL, claim_until = 0 "
                "WHERE item_id = ? AND claim_owner = ? AND status = 'pending'",
                (next_attempt_at, error[:2000], item_id, owner),
            )

    def drop(self, item_id: int, owner: str, *, error: str) -> None:
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
    def _end_wait(sql: Sql, wait_id: str, now: float) -> None:
        sql.run(
            "UPDATE waits SET state = 'done', auth_token = NULL, lease_owner = NULL, "
            "lease_until = 0, finished_at = ?, updated_at = ? WHERE wait_id = ?",
            (now, now, wait_id),
        )

    def metrics(self) -> dict[str, int]:
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
