"""The simulated workspace and network a strategy reads through.

- :class:`Simulator`: a :class:`~amlwait.workspace.ScriptedWorkspace`'s backend, served
  by the workspace app over real HTTP on loopback, with ARM's read bucket (250, 25/s) on
  the shared clock and a small rate of injected 500s and dropped connections. Two
  changes for scale, both here rather than in the workspace: requests are counted, not
  logged (a log of 500,000 records would dominate the child's memory), and LIST and GET
  answers cost the jobs they show, not the workspace: the job list is kept between
  requests, and each job's JSON document is encoded once per change of its view and
  reused, byte for byte, until the view changes (the timeline's next entry, a cancel or
  a PUT). The app's LIST and GET handlers are overridden to send those bytes; everything
  else (request log, faults, auth, routing, throttle, headers, ``nextLink``, paging) is
  the workspace app's own code or unchanged.
- :class:`SimulatedNetwork`: an httpx transport that, after each real answer, sleeps a
  drawn 30-80 ms on the shared clock, and counts requests, statuses and drops.
- :class:`ScaledClock`: real time, running ``speed`` times faster (``--check-real-time``).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from amlwait.core.clock import Clock
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.workspace import ScriptedWorkspace
from amlwait.workspace.app import (
    AppSettings,
    _ArmApi,
    _job_not_found,
    _job_ref,
    _next_link,
    _workspace,
    list_query,
)
from amlwait.workspace.backend import CancelResult, ListPage, ListQuery
from amlwait.workspace.document import JobView, job_document
from amlwait.workspace.faults import FaultMiddleware, FaultPlan
from amlwait.workspace.requestlog import RequestLog, RequestLogMiddleware, RequestRecord
from amlwait.workspace.scripted import ScriptedBackend, _ScriptedJob
from amlwait.workspace.server import ServerThread
from amlwait.workspace.throttle import Throttle
from bench.scenario import TAG, ScriptedJob

WS = WorkspaceRef("00000000-0000-0000-0000-0000000bec4e", "rg-bench", "ws-bench")
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


class _Slot:
    """One job's last rendering, good while the offset is in ``[lo, hi)`` and ``epoch`` holds.

    ``ScriptedBackend._view`` depends on the offset only through the timeline entry in
    force and the cancel state, which change only at known offsets: the timeline's
    entries, ``cancel_offset`` and ``cancel_offset + cancel_delay``. The rest of what it
    reads changes only through the backend's ``add``, ``put_job`` and ``cancel_job``, which
    move the backend's epoch on and so make every rendering stale.
    """

    __slots__ = ("archived", "body", "epoch", "hi", "job", "lo", "tags", "view")

    def __init__(self, job: _ScriptedJob) -> None:
        self.job = job
        self.epoch = -1  # stale until first rendered
        self.lo = self.hi = 0.0
        self.view: JobView | None = None
        self.body = b""  # the view's ARM document, encoded; empty while there is no view
        self.archived = False
        self.tags: Mapping[str, str] = {}


def _encode(content: Any) -> bytes:
    # Exactly starlette's JSONResponse.render, so cached pieces join into the same bytes.
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


class _PagedBackend(ScriptedBackend):
    """The scripted backend, with LIST pages and GETs costing their own jobs, not O(N).

    Paging is this simulator's own (unchanged): a page holds ``page_size`` shown jobs
    from the skip token on; its token is the index of the first shown job left out.
    Jobs change only through the backend's methods (as the app and ``ScriptedWorkspace``
    do); editing a ``_ScriptedJob`` or ``cancel_delay`` in place would not be seen.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = 0  # moved on by every change other than the passing of time
        self._slots: dict[JobRef, _Slot] = {}
        self._listed: dict[WorkspaceRef, list[_Slot]] = {}
        self._listed_epoch = -1

    def add(self, job: _ScriptedJob) -> None:
        super().add(job)
        with self.lock:
            self._epoch += 1

    def put_job(self, ref: JobRef, properties: Mapping[str, Any]) -> tuple[JobView, bool]:
        answer = super().put_job(ref, properties)
        with self.lock:
            self._epoch += 1  # new properties; a re-created job also moves to the end
        return answer

    def cancel_job(self, ref: JobRef) -> CancelResult:
        answer = super().cancel_job(ref)
        with self.lock:
            self._epoch += 1
        return answer

    def get_job(self, ref: JobRef) -> JobView | None:
        with self.lock:
            slot = self._slot_of(ref)
            return None if slot is None else self._current(slot, self._offset()).view

    def get_document(self, ref: JobRef) -> bytes | None:
        """The JSON of ``GET`` on the job, or ``None`` when it does not exist (404)."""
        with self.lock:
            slot = self._slot_of(ref)
            if slot is None:
                return None
            slot = self._current(slot, self._offset())
            return None if slot.view is None else slot.body

    def list_jobs(self, workspace: WorkspaceRef, query: ListQuery) -> ListPage:
        with self.lock:
            slots, token = self._page(workspace, query)
            views = [slot.view for slot in slots if slot.view is not None]
        return ListPage(views, token)

    def list_documents(
        self, workspace: WorkspaceRef, query: ListQuery
    ) -> tuple[list[bytes], str | None]:
        """The encoded documents of the page's jobs, and the next skip token, if any."""
        with self.lock:
            slots, token = self._page(workspace, query)
            return [slot.body for slot in slots], token

    # -- caches (call with the lock held) --------------------------------------------

    def _page(self, workspace: WorkspaceRef, query: ListQuery) -> tuple[list[_Slot], str | None]:
        start = int(query.skip_token or 0)
        shown: list[_Slot] = []
        consumed = start
        more = False
        shows_archived = query.view.shows
        tag = query.tag
        page_size = query.page_size
        offset = self._offset()
        epoch = self._epoch
        listed = self._listing(workspace)
        # The same jobs, in the same order, as ``listed[start:]``, without the copy.
        for index in range(slice(start, None).indices(len(listed))[0], len(listed)):
            slot = listed[index]
            if slot.epoch != epoch or not slot.lo <= offset < slot.hi:
                self._current(slot, offset)
            if (
                slot.view is None
                or not shows_archived(slot.archived)
                or (tag is not None and tag not in slot.tags)
            ):
                consumed += 1
                continue
            if len(shown) == page_size:
                more = True
                break
            shown.append(slot)
            consumed += 1
        return shown, str(consumed) if more else None

    def _slot_of(self, ref: JobRef) -> _Slot | None:
        job = self.jobs.get(ref)
        if job is None:
            return None
        slot = self._slots.get(ref)
        if slot is None or slot.job is not job:
            slot = self._slots[ref] = _Slot(job)
        return slot

    def _listing(self, workspace: WorkspaceRef) -> list[_Slot]:
        if self._listed_epoch != self._epoch:
            self._listed.clear()
            self._listed_epoch = self._epoch
        listed = self._listed.get(workspace)
        if listed is None:
            listed = [
                slot
                for ref, job in self.jobs.items()
                if job.ref.workspace == workspace and (slot := self._slot_of(ref)) is not None
            ]
            self._listed[workspace] = listed
        return listed

    def _current(self, slot: _Slot, offset: float) -> _Slot:
        if slot.epoch == self._epoch and slot.lo <= offset < slot.hi:
            return slot
        job = slot.job
        view = self._view(job, offset)
        lo, hi = -math.inf, math.inf
        for at, _ in job.timeline:  # the same walk as _ScriptedJob.entry_at
            if at <= offset:
                lo = max(lo, at)
            else:
                hi = at
                break
        if job.cancel_offset is not None:
            for at in (job.cancel_offset, job.cancel_offset + self.cancel_delay):
                if at <= offset:
                    lo = max(lo, at)
                else:
                    hi = min(hi, at)
        slot.epoch, slot.lo, slot.hi = self._epoch, lo, hi
        if view != slot.view:
            slot.view = view
            slot.body = b"" if view is None else _encode(job_document(view))
            if view is not None:
                slot.archived = view.is_archived
                slot.tags = view.tags
        return slot


class _Rendered(JSONResponse):
    """A ``JSONResponse`` whose content is already encoded (same headers, same bytes)."""

    def render(self, content: Any) -> bytes:
        assert isinstance(content, bytes)
        return content


class _PagedApi(_ArmApi):
    """The workspace app, sending the backend's cached documents for LIST and GET.

    Both handlers are the app's own, step for step, except that the JSON is joined from
    pieces encoded once rather than rebuilt and re-encoded for every request.
    """

    backend: _PagedBackend

    async def list_jobs(self, request: Request, params: Mapping[str, str]) -> Response:
        query = list_query(request, self.settings.page_size)
        documents, token = self.backend.list_documents(_workspace(params), query)
        body = b'{"value":[' + b",".join(documents) + b"]"
        if token is not None:
            body += b',"nextLink":' + _encode(_next_link(request, token))
        return _Rendered(body + b"}")

    async def get_job(self, request: Request, params: Mapping[str, str]) -> Response:
        ref = _job_ref(params)
        body = self.backend.get_document(ref)
        if body is None:
            raise _job_not_found(ref)
        return _Rendered(body)


def _create_app(
    backend: _PagedBackend,
    *,
    settings: AppSettings,
    clock: Clock,
    log: RequestLog,
    faults: FaultPlan,
    throttle: Throttle | None,
) -> ASGIApp:
    """``amlwait.workspace.app.create_app``, with :class:`_PagedApi` at its heart."""
    api = _PagedApi(backend, settings, throttle, None)
    return RequestLogMiddleware(FaultMiddleware(api, plan=faults), log=log, clock=clock)


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
        assert isinstance(self.workspace.backend, _PagedBackend)
        app = _create_app(
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
