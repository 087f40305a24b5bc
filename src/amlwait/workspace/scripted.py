"""``ScriptedWorkspace``: the same ARM API, with job statuses read from timelines.

For tests and benchmarks. Time is the clock's (a shared ``VirtualClock`` lets a waiter
and the server agree on it), measured from ``start_time``, the clock's time when the
workspace was created::

    ws = ScriptedWorkspace(clock)
    ws.add_job(WS, "train_1", [(0, None), (30, "Queued"), (90, "Running"), (600, "Completed")])

The status at time ``t`` is that of the last entry whose offset ≤ ``t``; before the first
entry, or while the entry's status is ``None``, the job does not exist (404). Anything a
timeline says is answered as is, so ``NotResponding`` that recovers, or a job that
vanishes, are just timelines.

Cancel: a job that is not terminal becomes CancelRequested at once and Canceled
``cancel_delay`` seconds later, whatever its timeline says afterwards; every cancel of an
existing job is recorded in ``cancellations``. A PUT creates a job that stays NotStarted
(or updates the mutable fields of an existing one).

``faults``, ``requests`` and ``throttle=True`` (ARM's read/write token buckets on the
clock) make the workspace misbehave on demand; see :mod:`~.faults` and :mod:`~.throttle`.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from amlwait.core.clock import Clock, SystemClock
from amlwait.core.jobs import JobRef, WorkspaceRef, is_valid_job_name
from amlwait.core.pipeline import PIPELINE_JOB_TYPE
from amlwait.core.status import TERMINAL, JobStatus
from amlwait.workspace.app import AppSettings, allowed_hosts_for, create_app
from amlwait.workspace.backend import CancelOutcome, CancelResult, ListPage, ListQuery
from amlwait.workspace.document import JobView, new_job_properties, updated_job_properties
from amlwait.workspace.errors import ArmError
from amlwait.workspace.faults import FaultPlan
from amlwait.workspace.requestlog import RequestLog, RequestRecord
from amlwait.workspace.server import ServerThread, check_exposure
from amlwait.workspace.throttle import Throttle
from amlwait.workspace.workspaces import KnownWorkspaces, WorkspaceSpec

Timeline = Sequence[tuple[float, str | None]]
SCRIPTED_FAILURE = "The scripted job failed."


@dataclass(frozen=True)
class Cancellation:
    job: JobRef
    time: float
    effective: bool
    """False when the job was already terminal, so nothing changed."""


@dataclass
class _ScriptedJob:
    ref: JobRef
    timeline: list[tuple[float, str | None]]
    properties: dict[str, Any]
    modified_offset: float | None = None
    cancel_offset: float | None = None
    failure: tuple[str, str] | None = None

    def entry_at(self, offset: float) -> tuple[float, str | None] | None:
        current = None
        for entry in self.timeline:
            if entry[0] <= offset:
                current = entry
            else:
                break
        return current


def _tags_of(job: _ScriptedJob) -> Mapping[str, Any]:
    tags = job.properties.get("tags")
    return tags if isinstance(tags, Mapping) else {}


@dataclass
class ScriptedBackend:
    """The timelines, answering the app as a :class:`~.backend.Backend`. Thread-safe."""

    clock: Clock
    start_time: float
    cancel_delay: float = 0.0
    jobs: dict[JobRef, _ScriptedJob] = field(default_factory=dict)
    cancellations: list[Cancellation] = field(default_factory=list)
    operations: dict[str, JobRef] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return self.clock.now()

    def add(self, job: _ScriptedJob) -> None:
        with self.lock:
            self.jobs[job.ref] = job

    def get_job(self, ref: JobRef) -> JobView | None:
        with self.lock:
            job = self.jobs.get(ref)
            return None if job is None else self._view(job, self._offset())

    def list_jobs(self, workspace: WorkspaceRef, query: ListQuery) -> ListPage:
        start = _parse_skip_token(query.skip_token)
        with self.lock:
            offset = self._offset()
            # A listing by tag renders only the jobs carrying it: rendering every job of a
            # large workspace per request made one listing cost O(all jobs), slow enough at
            # 10,000 jobs for a client's request timeout (the skip token counts these jobs).
            listed = [
                j
                for j in self.jobs.values()
                if j.ref.workspace == workspace and (query.tag is None or query.tag in _tags_of(j))
            ]
            views = [self._view(j, offset) for j in listed[start:]]
        shown: list[JobView] = []
        consumed = start
        for view in views:
            if len(shown) == query.page_size:
                break
            consumed += 1
            if view is not None and query.shows(view):
                shown.append(view)
        more = any(v is not None and query.shows(v) for v in views[consumed - start :])
        return ListPage(shown, str(consumed) if more else None)

    def put_job(self, ref: JobRef, properties: Mapping[str, Any]) -> tuple[JobView, bool]:
        if properties.get("jobType") == PIPELINE_JOB_TYPE:
            raise ArmError(
                400,
                "UserError",
                "The scripted workspace scripts command jobs only; pipeline jobs run in the "
                "local workspace (amlwait workspace serve).",
            )
        with self.lock:
            offset = self._offset()
            job = self.jobs.get(ref)
            created = job is None or self._view(job, offset) is None
            if job is None or created:
                job = _ScriptedJob(
                    ref,
                    [(offset, JobStatus.NOT_STARTED.value)],
                    new_job_properties(ref.name, properties),
                )
                self.jobs.pop(ref, None)
                self.jobs[ref] = job
            else:
                job.properties = updated_job_properties(ref.name, job.properties, properties)
                job.modified_offset = offset
            view = self._view(job, offset)
        assert view is not None
        return view, created

    def cancel_job(self, ref: JobRef) -> CancelResult:
        with self.lock:
            offset = self._offset()
            job = self.jobs.get(ref)
            view = None if job is None else self._view(job, offset)
            if job is None or view is None:
                return CancelResult(CancelOutcome.NOT_FOUND)
            effective = view.status not in TERMINAL
            self.cancellations.append(Cancellation(ref, self.clock.now(), effective))
            if not effective:
                return CancelResult(CancelOutcome.ALREADY_TERMINAL)
            if job.cancel_offset is None:
                job.cancel_offset = offset
            operation_id = str(uuid.uuid4())
            self.operations[operation_id] = ref
        return CancelResult(CancelOutcome.ACCEPTED, operation_id)

    def operation_done(self, operation_id: str) -> bool | None:
        with self.lock:
            ref = self.operations.get(operation_id)
            job = None if ref is None else self.jobs.get(ref)
            if job is None:
                return None
            view = self._view(job, self._offset())
        return view is None or view.status in TERMINAL

    def _offset(self) -> float:
        return self.clock.now() - self.start_time

    def _view(self, job: _ScriptedJob, offset: float) -> JobView | None:
        entry = job.entry_at(offset)
        if job.cancel_offset is not None and offset >= job.cancel_offset:
            canceled = offset >= job.cancel_offset + self.cancel_delay
            status = JobStatus.CANCELED if canceled else JobStatus.CANCEL_REQUESTED
            changed = job.cancel_offset + (self.cancel_delay if canceled else 0.0)
            return self._render(job, status.value, changed, offset)
        if entry is None or entry[1] is None:
            return None
        return self._render(job, entry[1], entry[0], offset)

    def _render(
        self, job: _ScriptedJob, status: str, changed_offset: float, offset: float
    ) -> JobView:
        created = next((o for o, s in job.timeline if s is not None), changed_offset)
        modified = max(changed_offset, job.modified_offset or changed_offset)
        started = next(
            (o for o, s in job.timeline if s == JobStatus.RUNNING.value and o <= offset), None
        )
        terminal = status in TERMINAL
        error_code = error = None
        if status == JobStatus.FAILED.value:
            error_code, error = job.failure or ("UserError", SCRIPTED_FAILURE)
        return JobView(
            ref=job.ref,
            properties=job.properties,
            status=status,
            created_at=self.start_time + created,
            modified_at=self.start_time + modified,
            started_at=None if started is None else self.start_time + started,
            ended_at=self.start_time + changed_offset if terminal else None,
            error=error,
            error_code=error_code,
        )


class ScriptedWorkspace:
    def __init__(
        self,
        clock: Clock | None = None,
        *,
        token: str | None = None,
        page_size: int = 100,
        cancel_retry_after: float = 10.0,
        cancel_delay: float = 0.0,
        throttle: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        workspaces: Iterable[WorkspaceRef | WorkspaceSpec | str] | None = None,
    ) -> None:
        check_exposure(host, token)
        self.clock: Clock = clock or SystemClock()
        self.start_time = self.clock.now()
        self.settings = AppSettings(
            token=token,
            page_size=page_size,
            cancel_retry_after=cancel_retry_after,
            allowed_hosts=allowed_hosts_for(host),
            workspaces=KnownWorkspaces(workspaces),
        )
        self.faults = FaultPlan()
        self.backend = ScriptedBackend(self.clock, self.start_time, cancel_delay=cancel_delay)
        self._log = RequestLog()
        self._throttle = Throttle(self.clock) if throttle else None
        self._host = host
        self._port = port
        self._server: ServerThread | None = None
        self._endpoint: str | None = None

    @property
    def endpoint(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (still known after ``stop``)."""
        if self._endpoint is None:
            raise RuntimeError("the scripted workspace is not started")
        return self._endpoint

    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.snapshot()

    @property
    def cancellations(self) -> list[Cancellation]:
        with self.backend.lock:
            return list(self.backend.cancellations)

    def add_job(
        self,
        workspace: WorkspaceRef,
        name: str,
        timeline: Timeline,
        tags: Mapping[str, str] | None = None,
        *,
        archived: bool = False,
        properties: Mapping[str, Any] | None = None,
        failure: tuple[str, str] | None = None,
    ) -> JobRef:
        """Script a job; ``timeline`` is ``(seconds after start_time, status or None)``.

        Run history and MLflow read its times from the timeline: it started at its first
        ``Running`` entry and ended at the entry that made it terminal. ``failure`` is the
        ``(code, message)`` they give while it is Failed (default ``("UserError",
        SCRIPTED_FAILURE)``)."""
        if not is_valid_job_name(name):
            raise ValueError(f"{name!r} is not a valid Azure ML job name")
        entries = sorted(((float(t), s) for t, s in timeline), key=lambda e: e[0])
        if not entries:
            raise ValueError(f"the timeline of {name!r} is empty")
        requested: dict[str, Any] = {
            "jobType": "Command",
            "command": "echo scripted",
            "environmentId": "azureml:scripted@latest",
        }
        requested.update(copy.deepcopy(dict(properties or {})))
        requested["tags"] = dict(tags or {})
        requested["isArchived"] = archived
        ref = JobRef(workspace, name)
        self.backend.add(
            _ScriptedJob(ref, entries, new_job_properties(name, requested), failure=failure)
        )
        return ref

    def start(self) -> ScriptedWorkspace:
        if self._server is not None:
            raise RuntimeError("the scripted workspace is already started")
        app = create_app(
            self.backend,
            settings=self.settings,
            clock=self.clock,
            log=self._log,
            faults=self.faults,
            throttle=self._throttle,
        )
        server = ServerThread(app, host=self._host, port=self._port)
        server.start()
        self._server = server
        self._endpoint = server.endpoint
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> ScriptedWorkspace:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _parse_skip_token(token: str | None) -> int:
    if token is None:
        return 0
    if not token.isdigit():
        raise ArmError(400, "UserError", f"The $skipToken {token!r} is not valid.")
    return int(token)
