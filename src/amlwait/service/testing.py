"""Test support for the waiting service, shared by the tests and the benchmark.

- :class:`FakeDevOps`: a fake Azure DevOps plan API on loopback, in the real wire format.
  It records every call and fails on demand; answers ``POST …/plans/{id}/logs`` with
  ``{"id": N}`` and everything else with 200 ``{}``. ``fail_completed(n, mode)`` makes the
  next ``n`` TaskCompleted events fail: ``"500"`` answers 500 at once, ``"timeout"``
  answers 500 only after ``slow_seconds`` (longer than the service's callback timeout).
  Only answered-2xx TaskCompleted calls are "accepted".
- :class:`ServiceProcess`: one ``python -m amlwait.service`` process on a SQLite store,
  reading Azure ML at a given endpoint (a scripted workspace) and calling back the fake.
- :func:`callback_headers` and :func:`wait_body`: what ``InvokeRESTAPI@1`` sends, as
  ``amlwait render service`` writes it, filled in.

Nothing here talks to Azure; it needs no test framework.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from amlwait.core.jobs import WorkspaceRef
from amlwait.devops.pipelines.service import service_body, service_headers
from amlwait.workspace.server import ServerThread

__all__ = [
    "AUTH_TOKEN",
    "EVENTGRID_KEY",
    "FAST_FLAGS",
    "ORG_PATH",
    "SERVICE_KEY",
    "STORE_SECRET",
    "TEST_WORKSPACE",
    "Call",
    "FakeDevOps",
    "ServiceProcess",
    "callback_headers",
    "wait_body",
]

TEST_WORKSPACE = WorkspaceRef("00000000-0000-0000-0000-0000000000a1", "rg-1", "ws-1")
SERVICE_KEY = "test-service-key-0123456789"
EVENTGRID_KEY = "eventgrid-key-0123456789"
AUTH_TOKEN = "devops-token-Zq9x"
STORE_SECRET = "test-store-secret-passphrase"
# Sub-second polling, leases and retries, so a wait takes seconds; later flags win.
FAST_FLAGS = [
    "--poll-interval", "0.1s",
    "--max-poll-interval", "0.2s",
    "--not-found-grace", "1s",
    "--lease", "1s",
    "--progress-interval", "0.1s",
    "--retry-initial", "0.1s",
    "--callback-timeout", "1s",
]  # fmt: skip

ORG_PATH = "/contoso/"


@dataclass
class Call:
    """One request the fake received, and the status it answered (0 until answered)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    at: float = field(default_factory=time.time)
    """When the request arrived (wall clock, seconds since the epoch)."""

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
    """The fake plan API; :meth:`start` serves it on a loopback port (``org_url``)."""

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


class ServiceProcess:
    """One ``python -m amlwait.service`` process; ``url`` once it listens.

    It stores waits in ``sqlite:///{db}``, reads Azure ML at ``endpoint`` with a static
    token, accepts callbacks to ``devops``'s organization, and starts with
    :data:`FAST_FLAGS` followed by ``extra`` (so ``extra`` wins). The keys are
    :data:`SERVICE_KEY` and :data:`EVENTGRID_KEY`; its stderr goes to a file next to ``db``.
    """

    def __init__(self, db: Path, devops: FakeDevOps, endpoint: str, extra: list[str]) -> None:
        self.db, self.devops, self.endpoint, self.extra = db, devops, endpoint, extra
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.stderr_path = db.with_suffix(f".{uuid.uuid4().hex[:6]}.stderr")

    def start(self) -> ServiceProcess:
        """Start the process and wait (up to 20 s) until it says where it listens."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "AMLWAIT"))}
        env.update(
            AMLWAIT_SERVICE_KEY=SERVICE_KEY,
            AMLWAIT_SERVICE_SECRET=STORE_SECRET,
            AMLWAIT_EVENTGRID_KEY=EVENTGRID_KEY,
            AMLWAIT_ARM_ENDPOINT=self.endpoint,
            AMLWAIT_ACCESS_TOKEN="arm-token",
            AMLWAIT_ALLOWED_ORGS=f"{self.devops.org_url},https://dev.azure.com/contoso/",
        )
        args = ["--port", "0", "--store", f"sqlite:///{self.db}", *FAST_FLAGS, *self.extra]
        process = subprocess.Popen(
            [sys.executable, "-m", "amlwait.service", *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("a"),
            text=True,
            env=env,
        )
        self.process = process
        stdout = process.stdout
        assert stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(stdout.readline()))
        reader.start()
        reader.join(timeout=20)
        if not (line and "listening on" in line[0]):
            raise RuntimeError(f"the service did not start: {self.stderr()}")
        self.url = line[0].split("listening on ", 1)[1].strip()
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def post_wait(self, body: str | bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/waits", content=body, headers=headers, timeout=10)

    def get(self, path: str, key: str | None = SERVICE_KEY) -> httpx.Response:
        headers = {"X-Amlwait-Key": key} if key else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)

    def store_metrics(self) -> dict[str, float]:
        """The ``amlwait_store_*`` values of ``GET /metrics``."""
        text = self.get("/metrics").text
        return {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("amlwait_store_")
        }


def callback_headers(
    org_url: str,
    *,
    plan: str | None = None,
    service_key: str = SERVICE_KEY,
    auth_token: str = AUTH_TOKEN,
    **over: str,
) -> dict[str, str]:
    """What InvokeRESTAPI@1 sends, as ``amlwait render service`` writes it (``over`` last).

    A new plan id unless ``plan`` is given. Raises RuntimeError if the rendered headers
    changed (then this helper must learn the new ones).
    """
    rendered = json.loads(service_headers())
    values = {
        "PlanUrl": org_url,
        "ProjectId": "project-1",
        "HubName": "build",
        "PlanId": plan or uuid.uuid4().hex,
        "JobId": "job-1",
        "TimelineId": "timeline-1",
        "TaskInstanceId": "task-1",
        "AuthToken": auth_token,
        "X-Amlwait-Key": service_key,
        "Content-Type": "application/json",
    }
    if set(rendered) != set(values):
        raise RuntimeError(f"amlwait render service now sends {sorted(rendered)}")
    values.update(over)
    return values


def wait_body(
    tag: str,
    expected: int,
    timeout: str = "1m",
    *,
    workspace_ref: WorkspaceRef = TEST_WORKSPACE,
    **extra: Any,
) -> str:
    """The ``POST /v1/waits`` body ``amlwait render service`` writes, ``extra`` keys added."""
    text = service_body(
        subscription=workspace_ref.subscription,
        resource_group=workspace_ref.resource_group,
        workspace=workspace_ref.workspace,
        tag=tag,
        expected_jobs=expected,
        timeout=timeout,
    )
    if extra:
        document = json.loads(text)
        document.update(extra)
        text = json.dumps(document)
    return text


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Stop ``process`` if it still runs: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
