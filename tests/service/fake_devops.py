"""A fake Azure DevOps plan API on loopback: records every call, fails on demand.

Answers ``POST …/plans/{id}/logs`` with ``{"id": N}`` and everything else with 200 ``{}``.
``fail_completed(n, mode)`` makes the next ``n`` TaskCompleted events fail: ``"500"``
answers 500 at once, ``"timeout"`` answers 500 only after ``slow_seconds`` (longer than
the service's callback timeout). Only answered-2xx TaskCompleted calls are "accepted".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from amlwait.workspace.server import ServerThread

ORG_PATH = "/contoso/"


@dataclass
class Call:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def is_task_completed(self) -> bool:
        body = self.json
        return (
            self.path.endswith("/events")
            and isinstance(body, dict)
            and body.get("name") == "TaskCompleted"
        )


@dataclass
class FakeDevOps:
    slow_seconds: float = 1.5
    calls: list[Call] = field(default_factory=list)
    _failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _log_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: ServerThread | None = None

    def fail_completed(self, count: int, mode: str = "500") -> None:
        with self._lock:
            self._failures.extend([mode] * count)

    @property
    def org_url(self) -> str:
        assert self._server is not None
        return self._server.endpoint + ORG_PATH

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def accepted_completions(self) -> list[Call]:
        return [c for c in self.snapshot() if c.is_task_completed and c.status == 200]

    def completion_attempts(self) -> list[Call]:
        return [c for c in self.snapshot() if c.is_task_completed]

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        call = Call(
            request.method,
            request.url.path,
            request.url.query,
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        with self._lock:
            self.calls.append(call)
            failure = self._failures.pop(0) if call.is_task_completed and self._failures else None
        if failure == "timeout":
            await asyncio.sleep(self.slow_seconds)
        if failure is not None:
            call.status = 500
            return JSONResponse({"message": "injected failure"}, status_code=500)
        call.status = 200
        if request.method == "POST" and call.path.endswith("/logs"):
            return JSONResponse({"id": next(self._log_ids), "path": "logs"})
        return JSONResponse({})

    def start(self) -> FakeDevOps:
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._handle,
                    methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
                )
            ]
        )
        self._server = ServerThread(app)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
