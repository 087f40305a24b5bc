"""The store's contract: its records, the :class:`Store` protocol, and the rules it keeps.

The waiting service's durable state: waits, their leases, and an outbox of messages to DevOps.

The store is the truth. A replica may be killed (``kill -9``) at any moment; whatever it
committed survives, whatever it had not is redone by itself after a restart or by another
replica once its leases run out. Two backends share one implementation (``sql.py``):
SQLite (``sqlite.py``: one file, WAL, one writer at a time via ``BEGIN IMMEDIATE``) and
PostgreSQL (``postgres.py``: several replicas; claims are ``SELECT … FOR UPDATE SKIP
LOCKED`` inside a transaction). The store never reads a clock: every ``now`` is passed in,
so tests inject time. Leases compare the ``now`` of different replicas, so their clocks
must agree to well within a lease.

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

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from amlwait.errors import ServiceError

SCHEMA_VERSION = 1
WAITING, COMPLETING, DONE = "waiting", "completing", "done"
WAIT_STATES = frozenset({WAITING, COMPLETING, DONE})
OUTBOX_KINDS = frozenset({"feed", "log", "completed"})


class StoreUnavailableError(ServiceError):
    """The database failed during an operation (gone, locked too long, disk full)."""


@dataclass(frozen=True)
class WaitRecord:
    """One stored wait, as read (never with its AuthToken).

    ``request`` is the validated body of ``POST /v1/waits``, ``callback`` the DevOps plan
    coordinates; ``result`` is the progress document the follower saves (``jobs``,
    ``states``, and at the end ``outcome``, ``reason``, ``result``). Times are epoch seconds
    of the clock that passed ``now``.
    """

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
    """One claimed outbox message; ``attempts`` counts the failed deliveries so far."""

    item_id: int
    wait_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int


class Store(Protocol):
    """The waits, their leases and the outbox; see the module docstring for the rules.

    Every method is one transaction. ``now`` is always passed in (the store reads no
    clock); a failing database raises :class:`StoreUnavailableError`.
    """

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

        The boolean is True when this call created it. Raises ValueError if ``request`` or
        ``callback`` carries the AuthToken (a key named AuthToken, or the token's value
        anywhere): it must only ever be stored sealed.
        """
        ...

    def get_wait(self, wait_id: str, *, with_result: bool = True) -> WaitRecord | None:
        """The wait ``wait_id``, or None if there is none. ``with_result=False`` leaves its
        progress document unread (``result`` is None): it can hold every job's state."""
        ...

    def auth_token(self, wait_id: str) -> str | None:
        """The wait's AuthToken in clear; None once the wait has ended (or is unknown)."""
        ...

    def claim_waits(
        self,
        owner: str,
        *,
        now: float,
        lease_seconds: float,
        limit: int = 1000,
        skip: Collection[str] = (),
    ) -> list[WaitRecord]:
        """Lease to ``owner`` the ``waiting`` waits nobody else holds, earliest deadline first.

        Claimable: unowned, owned by ``owner`` (its lease is extended), or whose lease ran
        out by ``now``. At most ``limit``; each lease lasts until ``now + lease_seconds``.
        The waits in ``skip`` (those ``owner`` already follows, whose leases it renews) are
        neither claimed nor returned, nor counted against ``limit``.
        """
        ...

    def renew_leases(
        self, owner: str, wait_ids: Sequence[str], *, now: float, lease_seconds: float
    ) -> list[str]:
        """Extend ``owner``'s leases; returns the ids it still holds (the others are lost).

        A lease that ran out but was not taken by anyone is still ``owner``'s and is renewed.
        A wait that is no longer ``waiting`` is not renewed.
        """
        ...

    def save_progress(
        self, wait_id: str, owner: str, result: dict[str, Any], *, now: float
    ) -> bool:
        """Record the latest job states; only by the holder of an unexpired lease.

        False means ``owner`` no longer holds the wait: stop following it.
        """
        ...

    def enqueue(self, wait_id: str, kind: str, payload: dict[str, Any], *, now: float) -> None:
        """Append a message to the wait's outbox; ignored unless the wait is ``waiting``.

        (After ``finish_wait`` the ``completed`` message is last and nothing may follow it.)
        Raises ValueError for a ``kind`` not in :data:`OUTBOX_KINDS`.
        """
        ...

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
        ...

    def purge_finished(self, *, before: float) -> int:
        """Delete the ``done`` waits (and their outbox) that ended before ``before``.

        Returns how many waits were deleted. ``waiting`` and ``completing`` waits are never
        touched, so a purge cannot lose a TaskCompleted; a purged wait is forgotten
        (``GET /v1/waits/{id}`` answers 404, and the same plan may start a new wait). The
        retention rule ("keep done waits for N days") is the caller's.
        """
        ...

    def claim_outbox(
        self, owner: str, *, now: float, lease_seconds: float, limit: int = 100
    ) -> list[OutboxItem]:
        """Claim due messages for ``lease_seconds``: at most the head of each wait's queue.

        The lease must outlast the whole delivery (HTTP timeout included): when it runs out,
        another replica may send the same message again.
        """
        ...

    def delivered(self, item_id: int, owner: str, *, now: float) -> None:
        """Azure DevOps accepted the message: never send it again.

        Recorded whoever holds the claim (a delivery is a fact). For ``completed`` the wait
        becomes ``done`` and its AuthToken is deleted, in the same transaction.
        """
        ...

    def retry_later(self, item_id: int, owner: str, *, next_attempt_at: float, error: str) -> None:
        """Release ``owner``'s claim; the item (still its wait's head) is due again later."""
        ...

    def drop(self, item_id: int, owner: str, *, error: str) -> None:
        """Give up on ``owner``'s claimed item; the next item of its wait becomes due.

        Meant for non-essential messages (feed lines). Dropping a ``completed`` message ends
        the wait without a TaskCompleted (e.g. the plan no longer exists): ``done``, token gone.
        """
        ...

    def metrics(self) -> dict[str, int]:
        """Counts: ``active_waits`` (waiting), ``completing_waits``, ``done_waits``,
        ``outbox_pending`` (of which ``outbox_retrying`` failed at least once),
        ``outbox_delivered``, ``outbox_dropped``."""
        ...

    def probe(self, *, now: float) -> None:
        """Write one small row and read it back, in one transaction; raise
        :class:`StoreUnavailableError` (or the driver's error) when the store cannot take a
        write now. What ``/healthz`` checks."""
        ...

    def waits_created(self) -> int:
        """How many waits this store has ever created (purged ones included): a counter
        kept in the same transaction as each new wait, so it only grows."""
        ...

    def close(self) -> None:
        """Release the connection; later calls raise :class:`StoreUnavailableError`."""
        ...
