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
- **Pipeline jobs** (strategy ``amlwait-pipeline``): with ``pipeline=True`` the scenario's
  jobs are not created up front; they are the *steps* a pipeline job will run. The
  simulator then registers component versions (``GET``/``PUT WS/components/{name}/versions/
  {v}``, the local workspace's shapes) and accepts the ``PUT`` of a PipelineJob (checked by
  the local workspace's own :func:`~amlwait.workspace.pipelines.check_pipeline_properties`):
  each node becomes a child run, a command job built by the local workspace's
  :func:`~amlwait.workspace.pipelines.child_properties` (``azureml.nodeid``, display name,
  ``properties: null`` on ARM) whose statuses follow the scenario job of its display name
  (timelines count from the simulator's start, like every other strategy's jobs). The
  children are hidden from LIST and shown by run history's ``…/runs/{id}/children`` as the
  local workspace shows them; the pipeline's own timeline is derived from theirs with
  :func:`~amlwait.core.pipeline.derive_pipeline_status`. Only ``continue_on_step_failure:
  true`` is scripted (a pipeline that stops at its first failed step would change its
  children's timelines), and a cancel of the pipeline does not reach the steps (no
  strategy cancels).
- :class:`SimulatedNetwork`: an httpx transport that, after each real answer, sleeps a
  drawn 30-80 ms on the shared clock, and counts requests, statuses and drops.
- :class:`ScaledClock`: real time, running ``speed`` times faster (``--check-real-time``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from amlwait.core.clock import Clock
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.pipeline import PIPELINE_JOB_TYPE, derive_pipeline_status
from amlwait.core.status import JobStatus
from amlwait.workspace import ScriptedWorkspace
from amlwait.workspace.app import (
    _WS,
    AppSettings,
    _ArmApi,
    _job_not_found,
    _job_ref,
    _next_link,
    _Route,
    _route,
    _workspace,
    list_query,
)
from amlwait.workspace.backend import CancelResult, ListPage, ListQuery
from amlwait.workspace.components import VERSION_PATH
from amlwait.workspace.document import JobView, job_document, new_job_properties
from amlwait.workspace.errors import ArmError
from amlwait.workspace.faults import FaultMiddleware, FaultPlan
from amlwait.workspace.pipelines import (
    check_asset_name,
    child_properties,
    component_document,
    continue_on_step_failure,
    parse_component_body,
    parse_component_id,
)
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
        # Pipeline jobs (see the module docstring): each step's timeline by display name,
        # each child's pipeline, each registered component version.
        self.step_timelines: dict[str, Sequence[tuple[float, str]]] = {}
        self.parents: dict[JobRef, str] = {}
        self.components: dict[tuple[WorkspaceRef, str, str], tuple[dict[str, Any], float]] = {}

    def add(self, job: _ScriptedJob) -> None:
        super().add(job)
        with self.lock:
            self._epoch += 1

    def put_job(self, ref: JobRef, properties: Mapping[str, Any]) -> tuple[JobView, bool]:
        if properties.get("jobType") == PIPELINE_JOB_TYPE:
            return self._put_pipeline(ref, properties)
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

    # -- pipeline jobs -------------------------------------------------------------------

    def get_component(
        self, workspace: WorkspaceRef, name: str, version: str
    ) -> dict[str, Any] | None:
        with self.lock:
            found = self.components.get((workspace, name, version))
        return (
            None
            if found is None
            else component_document(workspace, name, version, *found, found[1])
        )

    def put_component(
        self, workspace: WorkspaceRef, name: str, version: str, properties: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        with self.lock:
            found = self.components.get((workspace, name, version))
            if found is not None and found[0].get("componentSpec") != properties.get(
                "componentSpec"
            ):
                raise ArmError(
                    400,
                    "UserError",
                    f"The component '{name}' version '{version}' "
                    "exists with another componentSpec.",
                )
            created = found is None
            if found is None:
                found = self.components[(workspace, name, version)] = (properties, self.now())
        return component_document(workspace, name, version, found[0], found[1], found[1]), created

    def _put_pipeline(self, ref: JobRef, properties: Mapping[str, Any]) -> tuple[JobView, bool]:
        """Create the pipeline job and one child run per node (the module docstring)."""
        if not continue_on_step_failure(properties):
            raise ArmError(
                400,
                "UserError",
                "The simulator scripts pipeline jobs with "
                "settings.continue_on_step_failure: true only.",
            )
        with self.lock:
            known = ref in self.jobs
        if known:
            raise ArmError(409, "UserError", f"The simulator creates pipeline job {ref.name} once.")
        offset = self._offset()
        children: list[_ScriptedJob] = []
        for node_name, node in properties["jobs"].items():
            where = f"properties.jobs.{node_name}"
            workspace, name, version = parse_component_id(node.get("componentId"), where)
            with self.lock:
                component = self.components.get((workspace, name, version))
            if component is None:
                raise ArmError(
                    404,
                    "NotFound",
                    f"{where}.componentId: the component '{name}' "
                    f"version '{version}' was not found.",
                )
            child = child_properties(node_name, node, component[0], properties)
            timeline = self.step_timelines.get(str(child["displayName"]))
            if timeline is None:
                raise ArmError(
                    400,
                    "UserError",
                    f"{where}: the scenario has no job {child['displayName']!r} for this step.",
                )
            child_ref = JobRef(
                ref.workspace, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ref}/{node_name}"))
            )
            children.append(
                _ScriptedJob(child_ref, list(timeline), new_job_properties(child_ref.name, child))
            )
        for child in children:
            self.parents[child.ref] = ref.name
            self.add(child)
        timeline = _pipeline_timeline(offset, [child.timeline for child in children])
        parent = _ScriptedJob(ref, timeline, new_job_properties(ref.name, dict(properties)))
        failure = derive_pipeline_status(
            JobStatus.RUNNING.value,
            [t[-1][1] or "" for t in [c.timeline for c in children]],
            continue_on_step_failure=True,
        ).error
        parent.failure = ("UserError", failure) if failure else None
        self.add(parent)
        view = self.get_job(ref)
        assert view is not None
        return view, True

    def _render(
        self, job: _ScriptedJob, status: str, changed_offset: float, offset: float
    ) -> JobView:
        view = super()._render(job, status, changed_offset, offset)
        parent = self.parents.get(job.ref)
        return view if parent is None else dataclasses.replace(view, parent=parent)

    # -- caches (call with the lock held) --------------------------------------------

    def _page(self, workspace: WorkspaceRef, query: ListQuery) -> tuple[list[_Slot], str | None]:
        start = int(query.skip_token or 0)
        shown: list[_Slot] = []
        consumed = start
        more = False
        shows_archived = query.view.shows
        tag = query.tag
        page_size = query.page_size
        hidden = {} if query.include_children else self.parents  # steps: run history only
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
                or slot.job.ref in hidden
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


def _pipeline_timeline(
    start: float, steps: Sequence[Sequence[tuple[float, str | None]]]
) -> list[tuple[float, str | None]]:
    """The pipeline's statuses from ``start`` on, derived from its steps' timelines at each
    of their changes (:func:`~amlwait.core.pipeline.derive_pipeline_status`, which depends
    only on which statuses the steps are in). One sweep over every step's changes, keeping
    a count per status: 10,000 steps of 5 changes each cost 50,000 updates, not 50,000
    passes over 10,000 steps."""
    current = [JobStatus.NOT_STARTED.value] * len(steps)
    later: list[tuple[float, int, int, str]] = []
    for index, timeline in enumerate(steps):
        for order, (at, status) in enumerate(timeline):
            if not status:
                continue
            if at <= start:
                current[index] = status
            else:
                later.append((at, index, order, status))
    later.sort()
    counts = Counter(current)
    entries: list[tuple[float, str | None]] = []

    def derive(at: float) -> None:
        status = derive_pipeline_status(
            JobStatus.RUNNING.value,
            [name for name, count in counts.items() if count],
            continue_on_step_failure=True,
        ).status
        if not entries or entries[-1][1] != status:
            entries.append((at, status))

    derive(start)
    for position, (at, index, _, status) in enumerate(later):
        counts[current[index]] -= 1
        current[index] = status
        counts[status] += 1
        if position + 1 == len(later) or later[position + 1][0] != at:
            derive(at)
    return entries


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

    def where(params: Mapping[str, str]) -> tuple[WorkspaceRef, str, str]:
        check_asset_name(params["component"], "name")
        check_asset_name(params["version"], "version")
        return _workspace(params), params["component"], params["version"]

    async def get_component(request: Request, params: Mapping[str, str]) -> Response:
        found = backend.get_component(*where(params))
        if found is None:
            raise ArmError(
                404,
                "NotFound",
                f"The component '{params['component']}' version "
                f"'{params['version']}' was not found.",
            )
        return JSONResponse(found)

    async def put_component(request: Request, params: Mapping[str, str]) -> Response:
        properties = parse_component_body(await request.body())
        document, created = backend.put_component(*where(params), properties)
        return JSONResponse(document, status_code=201 if created else 200)

    api.routes.append(
        _Route(
            _route(_WS + VERSION_PATH),
            {"GET": get_component, "PUT": put_component},
            child="components",
        )
    )
    return RequestLogMiddleware(FaultMiddleware(api, plan=faults), log=log, clock=clock)


class Simulator:
    """The seeded jobs behind the ARM jobs API; use as a context manager."""

    def __init__(
        self, jobs: list[ScriptedJob], clock: Clock, *, seed: int, pipeline: bool = False
    ) -> None:
        """``pipeline``: the jobs are the steps of a pipeline job a strategy will PUT."""
        self.clock = clock
        self.workspace = ScriptedWorkspace(clock)
        backend = _PagedBackend(clock, self.workspace.start_time)
        self.workspace.backend = backend
        if pipeline:
            backend.step_timelines = {job.name: job.timeline for job in jobs}
        else:
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

    def server_cpu(self) -> float:
        """CPU seconds the server's thread has used so far (0 when it is not running)."""
        return thread_cpu(getattr(self._server, "_thread", None))

    @property
    def start_time(self) -> float:
        return self.workspace.start_time


def thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds ``thread`` has used so far, from its own CPU clock; 0 unless it runs."""
    if thread is None or thread.ident is None or not thread.is_alive():
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


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
