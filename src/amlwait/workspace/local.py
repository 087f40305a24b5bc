"""``LocalWorkspace``: an Azure-ML-compatible workspace on this machine.

It serves the ARM jobs API (:mod:`~.app`) on loopback, keeps jobs in SQLite under
``data_dir`` (:mod:`~.store`) and runs command jobs as local processes (:mod:`~.runner`),
prepared as Azure ML's runtime would (:mod:`~.runtime`: code folder, inputs, outputs)::

    with LocalWorkspace(tmp_path) as ws:
        ...  # ws.endpoint == "http://127.0.0.1:54321"; any bearer token is accepted

``stop(kill_jobs=True)`` (what leaving the ``with`` block does) kills running jobs and
marks them Canceled; ``stop(kill_jobs=False)`` leaves them running, and a new
``LocalWorkspace`` on the same ``data_dir`` takes them over. Either way queued jobs stay
queued and run after a restart.

Beyond ARM it serves each job's log at ``GET WS/jobs/{name}/amlwaitLogs`` (local only;
``amlwait logs JOB`` reads it). Refuses a non-loopback ``host`` unless ``token`` is set.
``faults`` and ``requests`` work as in :class:`~.scripted.ScriptedWorkspace`.
``workspaces`` (``[[SUB/]RG/]NAME`` strings or refs) are the workspaces served; the default,
``None``, serves any name (for tests; ``amlwait workspace serve`` always names them). With
``token=None`` any bearer token is accepted (for in-process use; the CLI always sets one).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from amlwait.core.clock import SystemClock
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.workspace.app import AppSettings, allowed_hosts_for, create_app
from amlwait.workspace.faults import FaultPlan
from amlwait.workspace.requestlog import RequestLog, RequestRecord
from amlwait.workspace.runner import LOG_FILE, Runner
from amlwait.workspace.server import ServerThread, check_exposure
from amlwait.workspace.store import JobStore
from amlwait.workspace.throttle import Throttle
from amlwait.workspace.workspaces import KnownWorkspaces, WorkspaceSpec


class LocalWorkspace:
    def __init__(
        self,
        data_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        max_concurrent: int = 2,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
        page_size: int = 100,
        cancel_retry_after: float = 10.0,
        throttle: bool = False,
        workspaces: Iterable[WorkspaceRef | WorkspaceSpec | str] | None = None,
    ) -> None:
        check_exposure(host, token)
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, not {max_concurrent}")
        self.data_dir = Path(data_dir)
        self.settings = AppSettings(
            token=token,
            page_size=page_size,
            cancel_retry_after=cancel_retry_after,
            allowed_hosts=allowed_hosts_for(host),
            workspaces=KnownWorkspaces(workspaces),
        )
        self.clock = SystemClock()
        self.faults = FaultPlan()
        self._log = RequestLog()
        self._throttle = Throttle(self.clock) if throttle else None
        self._host = host
        self._port = port
        self._tls = (tls_cert, tls_key)
        self._max_concurrent = max_concurrent
        self._store: JobStore | None = None
        self._runner: Runner | None = None
        self._server: ServerThread | None = None
        self._endpoint: str | None = None

    @property
    def endpoint(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (still known after ``stop``)."""
        if self._endpoint is None:
            raise RuntimeError("the local workspace is not started")
        return self._endpoint

    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.snapshot()

    @property
    def store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError("the local workspace is not started")
        return self._store

    def run_dir(self, ref: JobRef) -> Path:
        """Where the job runs; its log is ``run_dir(ref) / LOG_FILE``."""
        if self._runner is None:
            raise RuntimeError("the local workspace is not started")
        return self._runner.run_dir(ref)

    def log_path(self, ref: JobRef) -> Path:
        return self.run_dir(ref) / LOG_FILE

    def read_log(self, ref: JobRef) -> str | None:
        """The job's log so far (``""`` before it writes any), ``None`` for an unknown job."""
        if self.store.find(ref) is None:
            return None
        try:
            return self.log_path(ref).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> LocalWorkspace:
        if self._server is not None:
            raise RuntimeError("the local workspace is already started")
        store = JobStore(self.data_dir, clock=self.clock)
        runner = Runner(store, self.data_dir, max_concurrent=self._max_concurrent)
        app = create_app(
            store,
            settings=self.settings,
            clock=self.clock,
            log=self._log,
            faults=self.faults,
            throttle=self._throttle,
            logs=self.read_log,
        )
        server = ServerThread(
            app, host=self._host, port=self._port, tls_cert=self._tls[0], tls_key=self._tls[1]
        )
        runner.start()
        try:
            server.start()
        except BaseException:
            runner.stop(kill_jobs=False)
            store.close()
            raise
        self._store, self._runner, self._server = store, runner, server
        self._endpoint = server.endpoint
        return self

    def stop(self, *, kill_jobs: bool = True) -> None:
        """Stop serving; with ``kill_jobs`` running jobs are killed and marked Canceled."""
        if self._server is not None:
            self._server.stop()
        if self._runner is not None:
            self._runner.stop(kill_jobs=kill_jobs)
        if self._store is not None:
            self._store.close()
        self._server = self._runner = self._store = None

    def __enter__(self) -> LocalWorkspace:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
