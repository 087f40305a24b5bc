"""The simulated workspace and network a strategy reads through.

- :class:`Simulator`: a :class:`~amlwait.workspace.ScriptedWorkspace`'s backend, served
  by the workspace app over real HTTP on loopback, with ARM's read bucket (250, 25/s) on
  the shared clock and a small rate of injected 500s and dropped connections. Two
  changes for scale, both here rather than in the workspace: requests are counted, not
  logged (a log of 500,000 records would dominate the child's memory), and LIST pages
  are built from the page's own jobs instead of every job after the skip token.
- :class:`SimulatedNetwork`: an httpx transport that, after each real answer, sleeps a
  drawn 30-80 ms on the shared clock, and counts requests, statuses and drops.
- :class:`ScaledClock`: real time, running ``speed`` times faster (``--check-real-time``).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from typing import Any

import httpx

from amlwait.core.clock import Clock
from amlwait.core.jobs import WorkspaceRef
from amlwait.workspace import ScriptedWorkspace
from amlwait.workspace.app import create_app
from amlwait.workspace.backend import ListPage, ListQuery
from amlwait.workspace.requestlog import RequestLog, RequestRecord
from amlwait.workspace.scripted import ScriptedBackend
from amlwait.workspace.server import ServerThread
from amlwait.workspace.throttle import Throttle
from bench.scenario import TAG, ScriptedJob

WS = WorkspaceRef("00000000-0000-0000-0000-00000000bench", "rg-bench", "ws-bench")
API_VERSION = "2025-12-01"
SERVER_ERROR_RATE = 0.003
DROP_RATE = 0.002
LATENCY = (0.030, 0.080)


class _CountingLog(RequestLog):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._count_lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._count_lock:
            self.count += 1


class _PagedBackend(ScriptedBackend):
    """The scripted backend, with LIST pages costing their own size rather than O(N)."""

    def list_jobs(self, workspace: WorkspaceRef, query: ListQuery) -> ListPage:
        start = int(query.skip_token or 0)
        shown = []
        consumed = start
        more = False
        with self.lock:
            offset = self._offset()
            listed = [job for job in self.jobs.values() if job.ref.workspace == workspace]
            for job in listed[start:]:
                view = self._view(job, offset)
                if view is None or not query.shows(view):
                    consumed += 1
                    continue
                if len(shown) == query.page_size:
                    more = True
                    break
                shown.append(view)
                consumed += 1
        return ListPage(shown, str(consumed) if more else None)


class Simulator:
    """The seeded jobs behind the ARM jobs API; use as a context manager."""

    def __init__(self, jobs: list[ScriptedJob], clock: Clock, *, seed: int) -> None:
        self.clock = clock
        self.workspace = ScriptedWorkspace(clock)
        self.workspace.backend = _PagedBackend(clock, self.workspace.start_time)
        for job in jobs:
            self.workspace.add_job(WS, job.name, job.timeline, tags={TAG: "bench"})
        fault_rng = random.Random(seed * 7919 + 1)
        fault_lock = threading.Lock()

        def sometimes(rate: float) -> Any:
            def match(record: RequestRecord) -> bool:
                with fault_lock:
                    return fault_rng.random() < rate

            return match

        self.workspace.faults.add("500", match=sometimes(SERVER_ERROR_RATE), times=10**12)
        self.workspace.faults.add("drop", match=sometimes(DROP_RATE), times=10**12)
        self.log = _CountingLog()
        self._server: ServerThread | None = None
        self.endpoint = ""

    def __enter__(self) -> Simulator:
        app = create_app(
            self.workspace.backend,
            settings=self.workspace.settings,
            clock=self.clock,
            log=self.log,
            faults=self.workspace.faults,
            throttle=Throttle(self.clock),
        )
        self._server = ServerThread(app)
        self._server.start()
        self.endpoint = self._server.endpoint
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def start_time(self) -> float:
        return self.workspace.start_time


class SimulatedNetwork(httpx.AsyncBaseTransport):
    """Real loopback HTTP plus a drawn latency on the shared clock; counts what it sends."""

    def __init__(self, clock: Clock, seed: int) -> None:
        self.clock = clock
        self.rng = random.Random(seed * 104729 + 3)
        self.inner = httpx.AsyncHTTPTransport()
        self.sent = 0
        self.dropped = 0
        self.statuses: Counter[int] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        latency = self.rng.uniform(*LATENCY)
        try:
            answer = await self.inner.handle_async_request(request)
            body = await answer.aread()
            await answer.aclose()
        except httpx.TransportError:
            self.dropped += 1
            await self.clock.sleep(latency)
            raise
        self.statuses[answer.status_code] += 1
        await self.clock.sleep(latency)
        headers = [(k, v) for k, v in answer.headers.raw if k.lower() != b"content-encoding"]
        return httpx.Response(answer.status_code, headers=headers, content=body, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ScaledClock:
    """Real time, ``speed`` times faster: ``sleep(s)`` really sleeps ``s / speed``."""

    def __init__(self, speed: float, start: float = 1_767_225_600.0) -> None:
        self.speed = speed
        self.start = start
        self._origin = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._origin) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)
