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

Misbehaviour a real ARM should never show, but a client must survive (each ends in a
result, never a hang, a crash or a token on the screen):

- ``"malformed-json"``: 200, ``application/json``, a body that is not JSON.
- ``"html"``: 200 with an HTML page (what a captive portal or a proxy sends).
- ``"json-list"``: 200 with a JSON list where an object belongs.
- ``"properties-string"``: 200 with ``"properties": "Running"`` (a string, not an object)
  in the job (or in every job of a listing).
- ``"self-next-link"``: the normal listing page, with ``nextLink`` pointing back to the
  very request that fetched it (a listing that never ends).
- ``"one-job-loop"``: the listing page cut to its first job, ``nextLink`` pointing back to
  itself.
- ``"drip"``: a 200 whose headers come at once and whose body comes one byte every
  ``delay`` *real* seconds (no read ever times out; the whole answer takes forever).
- ``"hang"``: the request is read and never answered, until the client goes away.
- ``"retry-after"``: 429 with ``Retry-After: retry_after`` written as is, ``inf`` and
  ``100000`` included.
- ``"echo-authorization"``: 400 whose error message repeats the request's
  ``Authorization`` header (a careless server, or a hostile one).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amlwait.workspace.errors import error_response, format_seconds
from amlwait.workspace.requestlog import RequestRecord, record_of

FaultKind = Literal[
    "429",
    "500",
    "503",
    "401",
    "403",
    "404",
    "drop",
    "slow",
    "malformed-json",
    "html",
    "json-list",
    "properties-string",
    "self-next-link",
    "one-job-loop",
    "drip",
    "hang",
    "retry-after",
    "echo-authorization",
]
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
        elif fault.kind in _BODIES:
            await _raw_answer(send, 200, *_BODIES[fault.kind])
        elif fault.kind == "properties-string":
            await _properties_string(scope, send)
        elif fault.kind in ("self-next-link", "one-job-loop"):
            await _looping_page(
                scope, receive, send, self.app, first_only=fault.kind != "self-next-link"
            )
        elif fault.kind == "drip":
            await _drip(receive, send, fault.delay)
        elif fault.kind == "hang":
            await _until_disconnected(receive)
        elif fault.kind == "echo-authorization":
            await _echo_authorization(scope, send)
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


_BODIES: dict[str, tuple[bytes, bytes]] = {
    "malformed-json": (b"application/json", b'{"value": [{"name": "J", "properties": {'),
    "html": (
        b"text/html; charset=utf-8",
        b"<!DOCTYPE html><html><body><h1>Sign in to continue</h1></body></html>",
    ),
    "json-list": (b"application/json", b'[{"name": "J"}]'),
}


async def _raw_answer(
    send: Send,
    status: int,
    content_type: bytes,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _properties_string(scope: Scope, send: Send) -> None:
    path: str = scope["path"]
    item = {"name": path.rsplit("/", 1)[-1], "properties": "Running"}
    body = item if not path.lower().endswith("/jobs") else {"value": [item]}
    await _raw_answer(send, 200, b"application/json", json.dumps(body).encode())


def _own_url(scope: Scope) -> str:
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope['scheme']}://{host}{scope['path']}" + (f"?{query}" if query else "")


async def _looping_page(
    scope: Scope, receive: Receive, send: Send, app: ASGIApp, *, first_only: bool
) -> None:
    """The app's own answer, its ``nextLink`` rewritten to the URL that fetched it."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    try:
        page = json.loads(b"".join(chunks))
    except ValueError:
        page = None
    if not isinstance(page, dict) or start.get("status") != 200:
        await _raw_answer(
            send, int(start.get("status", 500)), b"application/json", b"".join(chunks)
        )
        return
    if first_only:
        page["value"] = list(page.get("value") or [])[:1]
    page["nextLink"] = _own_url(scope)
    await _raw_answer(send, 200, b"application/json", json.dumps(page).encode())


async def _until_disconnected(receive: Receive) -> None:
    """Read the request, then wait for the client to go away (or the server to stop)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _drip(receive: Receive, send: Send, every: float) -> None:
    """Headers now, then one byte of a long body every ``every`` seconds until the client
    leaves (a bounded number of bytes, so a forgotten test still ends)."""
    body = b'{"value": []}' + b" " * 4096
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    gone = asyncio.ensure_future(_until_disconnected(receive))
    try:
        for index in range(len(body)):
            await asyncio.wait({gone}, timeout=every)
            if gone.done():
                return
            more = index + 1 < len(body)
            await send(
                {"type": "http.response.body", "body": body[index : index + 1], "more_body": more}
            )
    finally:
        gone.cancel()


async def _echo_authorization(scope: Scope, send: Send) -> None:
    authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    body = {
        "error": {
            "code": "BadRequest",
            "message": f"The request with header Authorization: {authorization} is not valid.",
        }
    }
    await _raw_answer(send, 400, b"application/json", json.dumps(body).encode())


def _retry_after_text(seconds: float) -> str:
    return format_seconds(seconds) if math.isfinite(seconds) else str(seconds)


def _error_answer(fault: Fault) -> ASGIApp:
    retry = {"Retry-After": _retry_after_text(fault.retry_after)}
    if fault.kind in ("429", "retry-after"):
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
