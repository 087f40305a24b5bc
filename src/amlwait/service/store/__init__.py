"""The waiting service's durable state: waits, their leases, and an outbox of messages to DevOps.

The contract (records, the :class:`Store` protocol, the lifecycle of a wait and the
exactly-once argument) is in :mod:`amlwait.service.store.base`; the SQL written once for
both backends in ``sql.py``; the backends in ``sqlite.py`` and ``postgres.py``;
:func:`open_store` picks one by URL.
"""

from __future__ import annotations

from amlwait.errors import InputError
from amlwait.service.secrets import cipher_for
from amlwait.service.store.base import (
    OUTBOX_KINDS,
    SCHEMA_VERSION,
    WAIT_STATES,
    OutboxItem,
    Store,
    StoreUnavailableError,
    WaitRecord,
)
from amlwait.service.store.postgres import PostgresStore, redacted
from amlwait.service.store.sqlite import SqliteStore

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
        f"unsupported store URL {redacted(url)!r}: use sqlite:///path/to/waits.db "
        "or postgresql://user@host:5432/database"
    )
