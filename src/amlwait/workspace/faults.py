"""Injected faults: answers a flaky ARM gives, on demand.

``plan.add(kind, match=..., times=1, retry_after=1.0, delay=0.5)`` arms a fault; each
matching request uses one of its ``times`` until it is spent. Faults are checked in the
order they were added; the first one that matches answers. ``match`` is ``None`` (every
request), a job name (requests whose path names that job), or a callable taking the
:class:`~amlwait.workspace.requestlog.RequestRecord`.

Kinds and what the client sees:

- ``"429"``: 429, ``Retry-After: retry_after``, ARM error code ``TooManyRequests``.
- ``"500"``: 500 ``InternalServerError``.
- ``"503"``: 503 ``ServiceUnavailable`` with ``Retry-After: retry_after``.
- ``"401"``: 401 ``AuthenticationFailed`` with ``WWW-Authenticate: Bearer``.
- ``"drop"``: a 200 whose headers promise a longer body than is sent before the
  connection closes; httpx raises ``RemoteProtocolError``.
- ``"slow"``: the normal answer, after ``delay`` *real* seconds.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from starlette.types import ASGIApp, Receive, Scope, Send

from amlwait.workspace.errors import error_response, format_seconds
from amlwait.workspace.requestlog import RequestRecord, record_of

FaultKind = Literal["429", "500", "503", "401", "403", "404", "drop", "slow"]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
Matcher = str | Callable[[RequestRecord], bool] | None

# Set while a "drop" fault is answering, so the server's log filter can hide the
# "returned without completing response" error that the drop causes on purpose.
dropping_connection: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "amlwait_dropping_connection", default=False
)


@dataclass
class Fault:
    kind: FaultKind
    match: Matcher
    times: int
    retry_after: float
    delay: float
    used: int = 0

    def matches(self, record: RequestRecord) -> bool:
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return record.job == self.match
        return bool(self.match(record))


class FaultPlan:
    """The armed faults; thread-safe (tests add faults while the server runs)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        kind: FaultKind,
        *,
        match: Matcher = None,
        times: int = 1,
        retry_after: float = 1.0,
        delay: float = 0.5,
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(FAULT_KINDS)}")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        fault = Fault(kind, match, times, retry_after, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, record: RequestRecord) -> Fault | None:
        """The fault that answers ``record``, using one of its times; ``None`` if none."""
        with self._lock:
            for fault in self._faults:
                if fault.used < fault.times and fault.matches(record):
                    fault.used += 1
                    return fault
        return None

    def pending(self) -> int:
        """How many fault answers are still armed."""
        with self._lock:
            return sum(f.times - f.used for f in self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class FaultMiddleware:
    def __init__(self, app: ASGIApp, *, plan: FaultPlan) -> None:
        self.app = app
        self.plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = record_of(scope) if scope["type"] == "http" else None
        fault = self.plan.take(record) if record is not None else None
        if fault is None or record is None:
            await self.app(scope, receive, send)
            return
        record.fault = fault.kind
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            await self.app(scope, receive, send)
        elif fault.kind == "drop":
            await _drop(send)
        else:
            await _error_answer(fault)(scope, receive, send)


async def _drop(send: Send) -> None:
    dropping_connection.set(True)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
        }
    )
    await send(
        {"type": "http.response.body", "body": b'{"id": "/subscriptions/', "more_body": True}
    )
    # Returning now leaves the response incomplete: the server closes the connection.


def _error_answer(fault: Fault) -> ASGIApp:
    retry = {"Retry-After": format_seconds(fault.retry_after)}
    if fault.kind == "429":
        return error_response(
            429,
            "TooManyRequests",
            "The request is being throttled (injected fault).",
            headers=retry,
        )
    if fault.kind == "503":
        return error_response(
            503, "ServiceUnavailable", "The service is unavailable (injected fault).", headers=retry
        )
    if fault.kind == "401":
        return error_response(
            401,
            "AuthenticationFailed",
            "The access token expired or is invalid (injected fault).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if fault.kind == "403":
        return error_response(
            403, "AuthorizationFailed", "The client has no permission (injected fault)."
        )
    if fault.kind == "404":
        return error_response(404, "NotFound", "Not found (injected fault).")
    return error_response(
        500, "InternalServerError", "The server had an internal error (injected fault)."
    )
