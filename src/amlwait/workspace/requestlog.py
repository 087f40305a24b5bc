"""Every request the workspace received, so tests can count and inspect them.

The outermost layer of the app: it stamps each request with an ``x-ms-request-id`` (a
uuid, on every answer, errors and injected faults included) and appends a
:class:`RequestRecord` to the :class:`RequestLog` *when the request arrives*. The record's
``status`` is filled in as the answer starts, so it is set before the client can read a
byte of it; ``fault`` names the injected fault that answered instead, if any.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amlwait.core.clock import Clock

RECORD_SCOPE_KEY = "amlwait.request_record"
_JOB_IN_PATH = re.compile(r"/jobs/([^/]+)", re.IGNORECASE)


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    time: float
    request_id: str
    job: str | None = None
    status: int | None = None
    fault: str | None = None
    subscription: str | None = None


class RequestLog:
    """A thread-safe, append-only list of :class:`RequestRecord`."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def record_of(scope: Scope) -> RequestRecord | None:
    record = scope.get(RECORD_SCOPE_KEY)
    return record if isinstance(record, RequestRecord) else None


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, *, log: RequestLog, clock: Clock) -> None:
        self.app = app
        self.log = log
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), True))
        job = _JOB_IN_PATH.search(path)
        sub = re.match(r"/subscriptions/([^/]+)", path, re.IGNORECASE)
        record = RequestRecord(
            method=scope["method"],
            path=path,
            query=query,
            time=self.clock.now(),
            request_id=str(uuid.uuid4()),
            job=job.group(1) if job else None,
            subscription=sub.group(1) if sub else None,
        )
        scope[RECORD_SCOPE_KEY] = record
        self.log.append(record)

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
                headers = [
                    *message.get("headers", []),
                    (b"x-ms-request-id", record.request_id.encode("ascii")),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_request_id)
