"""The real workspace's jobs, in SQLite (``DIR/workspace.db``), shared by server and runner.

One connection guarded by one lock, so the HTTP server thread and the runner thread can
both use the store; every status change the runner makes is conditional on the status it
expects (``transition``), so a cancel arriving between two runner ticks is never lost.

The store answers the app as a :class:`~.backend.Backend`. A ``$skipToken`` is the
sequence number of the last job of the previous page: paging stays stable while jobs are
added, and the order is creation order.

A new job is planned by :mod:`~.runtime` as it is PUT: one that cannot run (an Azure ML
code asset, an unknown ``${{inputs.NAME}}``...) is refused with a 400, and the stored
properties carry each output's local ``uri``. An update PUT plans nothing: only mutable
fields change.

A pipeline job (:mod:`~.pipelines`) is one row (``is_pipeline`` 1) that runs nothing itself,
plus one row per step (``parent`` = its name), each a command job planned like any other
and inserted with the pipeline in one transaction. Steps are left out of ``list_jobs``
unless a query asks for them (run history and MLflow do). Component versions are rows of
``components``.

Columns the runner owns: ``pid`` (process group leader of a running job), ``exit_code``
and ``error``. A cancel operation is a row of ``operations`` naming the job; it is done
when the job's status is terminal.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlwait.core.clock import Clock, SystemClock
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.status import TERMINAL, JobStatus
from amlwait.workspace.backend import CancelOutcome, CancelResult, ListPage, ListQuery
from amlwait.workspace.document import (
    JobView,
    new_job_properties,
    updated_job_properties,
)
from amlwait.workspace.errors import ArmError
from amlwait.workspace.pipelines import (
    child_properties,
    component_document,
    is_pipeline,
    parse_component_id,
)
from amlwait.workspace.runtime import (
    JobSetupError,
    plan_run,
    run_directory,
    runs_root,
    with_output_uris,
)
from amlwait.workspace.webhooks import webhooks_of, with_webhooks

DATABASE_NAME = "workspace.db"
SCHEMA_VERSION = 3
# Version 1 lacked the run times and the error code; version 2 the pipeline columns.
# Opening an older one adds them (empty: every job a top-level command job).
_MIGRATE_FROM_2 = (
    "ALTER TABLE jobs ADD COLUMN parent TEXT",
    "ALTER TABLE jobs ADD COLUMN is_pipeline INTEGER NOT NULL DEFAULT 0",
)
_MIGRATE_FROM_1 = (
    "ALTER TABLE jobs ADD COLUMN started_at REAL",
    "ALTER TABLE jobs ADD COLUMN ended_at REAL",
    "ALTER TABLE jobs ADD COLUMN error_code TEXT",
    *_MIGRATE_FROM_2,
)
_MIGRATIONS = {1: _MIGRATE_FROM_1, 2: _MIGRATE_FROM_2}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    resource_group TEXT NOT NULL,
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    properties TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    modified_at REAL NOT NULL,
    pid INTEGER,
    exit_code INTEGER,
    error TEXT,
    started_at REAL,
    ended_at REAL,
    error_code TEXT,
    parent TEXT,
    is_pipeline INTEGER NOT NULL DEFAULT 0,
    UNIQUE (subscription, resource_group, workspace, name)
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    job_seq INTEGER NOT NULL REFERENCES jobs (seq),
    name TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at REAL NOT NULL,
    done INTEGER NOT NULL,
    outcome TEXT,
    PRIMARY KEY (job_seq, name)
);
CREATE TABLE IF NOT EXISTS components (
    subscription TEXT NOT NULL,
    resource_group TEXT NOT NULL,
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    properties TEXT NOT NULL,
    created_at REAL NOT NULL,
    modified_at REAL NOT NULL,
    PRIMARY KEY (subscription, resource_group, workspace, name, version)
);
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY,
    job_seq INTEGER NOT NULL REFERENCES jobs (seq),
    created_at REAL NOT NULL
);
"""

_COLUMNS = (
    "seq, subscription, resource_group, workspace, name, properties, status, "
    "created_at, modified_at, pid, exit_code, error, started_at, ended_at, error_code, parent"
)


@dataclass(frozen=True)
class StoredJob:
    seq: int
    ref: JobRef
    properties: dict[str, Any]
    status: str
    created_at: float
    modified_at: float
    pid: int | None
    exit_code: int | None
    error: str | None
    started_at: float | None = None
    ended_at: float | None = None
    error_code: str | None = None
    parent: str | None = None

    def view(self) -> JobView:
        return JobView(
            ref=self.ref,
            properties=self.properties,
            status=self.status,
            created_at=self.created_at,
            modified_at=self.modified_at,
            exit_code=self.exit_code,
            error=self.error,
            error_code=self.error_code or ("UserError" if self.error else None),
            started_at=self.started_at,
            ended_at=self.ended_at,
            parent=self.parent,
        )


class JobStore:
    def __init__(self, data_dir: Path, *, clock: Clock | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.data_dir / DATABASE_NAME, check_same_thread=False, isolation_level=None
        )
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            found = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if found is None:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(found[0]) in _MIGRATIONS:
                for statement in _MIGRATIONS[int(found[0])]:
                    self._db.execute(statement)
                self._db.execute(
                    "UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),)
                )
            elif int(found[0]) != SCHEMA_VERSION:
                raise ValueError(
                    f"{self.data_dir / DATABASE_NAME} has schema version {found[0]}; "
                    f"this amlwait reads version {SCHEMA_VERSION}"
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def now(self) -> float:
        return self._clock.now()

    # -- Backend ---------------------------------------------------------------------------

    def get_job(self, ref: JobRef) -> JobView | None:
        job = self.find(ref)
        return job.view() if job else None

    def list_jobs(self, workspace: WorkspaceRef, query: ListQuery) -> ListPage:
        after = _parse_skip_token(query.skip_token)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE subscription=? AND resource_group=? "
                "AND workspace=? AND seq>? ORDER BY seq",
                (workspace.subscription, workspace.resource_group, workspace.workspace, after),
            ).fetchall()
        shown: list[StoredJob] = []
        for row in rows:
            job = _job(row)
            if job.parent is not None and not query.include_children:
                continue  # pipeline steps are listed under their parent (run history)
            if query.shows(job.view()):
                shown.append(job)
                if len(shown) > query.page_size:
                    break
        page = shown[: query.page_size]
        more = len(shown) > query.page_size
        return ListPage([j.view() for j in page], str(page[-1].seq) if more else None)

    def put_job(self, ref: JobRef, properties: Mapping[str, Any]) -> tuple[JobView, bool]:
        now = self.now()
        with self._lock:
            row = self._select_one(ref)
            if row is None and is_pipeline(properties):
                self._insert_pipeline(ref, new_job_properties(ref.name, properties), now)
                created = True
            elif row is None:
                stored = self._planned(ref, new_job_properties(ref.name, properties))
                self._db.execute(
                    "INSERT INTO jobs (subscription, resource_group, workspace, name, "
                    "properties, status, created_at, modified_at) VALUES (?,?,?,?,?,?,?,?)",
                    (*_key(ref), json.dumps(stored), JobStatus.NOT_STARTED.value, now, now),
                )
                created = True
            else:
                stored = updated_job_properties(ref.name, _job(row).properties, properties)
                self._db.execute(
                    "UPDATE jobs SET properties=?, modified_at=? WHERE seq=?",
                    (json.dumps(stored), now, row[0]),
                )
                created = False
            job = _job(self._select_one(ref))
        return job.view(), created

    def _insert_pipeline(self, ref: JobRef, properties: dict[str, Any], now: float) -> None:
        """The pipeline and one NotStarted child per node, in one transaction; a node
        that cannot run refuses the whole PUT (400 naming the node), nothing stored."""
        children: list[tuple[str, dict[str, Any]]] = []
        for node_name, node in properties["jobs"].items():
            where = f"properties.jobs.{node_name}"
            workspace, name, version = parse_component_id(node.get("componentId"), where)
            if _workspace_key(workspace) != _key(ref)[:3]:
                raise ArmError(400, "UserError", f"{where}.componentId names another workspace.")
            component = self._component_row(workspace, name, version)
            if component is None:
                raise ArmError(
                    404,
                    "NotFound",
                    f"{where}.componentId: the component '{name}' version '{version}' was "
                    f"not found in workspace '{workspace.workspace}'.",
                )
            child_ref = JobRef(ref.workspace, str(uuid.uuid4()))
            child = new_job_properties(
                child_ref.name, child_properties(node_name, node, component[0], properties)
            )
            try:
                children.append((child_ref.name, self._planned(child_ref, child)))
            except ArmError as exc:
                raise ArmError(400, exc.code, f"{where}: {exc.message}") from None
        insert = (
            "INSERT INTO jobs (subscription, resource_group, workspace, name, properties, "
            "status, created_at, modified_at, parent, is_pipeline) VALUES (?,?,?,?,?,?,?,?,?,?)"
        )
        not_started = JobStatus.NOT_STARTED.value
        self._db.execute("BEGIN")
        try:
            self._db.execute(
                insert, (*_key(ref), json.dumps(properties), not_started, now, now, None, 1)
            )
            for name, child in children:
                self._db.execute(
                    insert,
                    (*_key(ref)[:3], name, json.dumps(child), not_started, now, now, ref.name, 0),
                )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- Azure DevOps webhooks (:mod:`~.webhooks`) ------------------------------------------

    def patch_webhooks(self, ref: JobRef, webhooks: Mapping[str, Any]) -> JobView | None:
        """Merge ``webhooks`` into the job's; ``None`` for an unknown job."""
        now = self.now()
        with self._lock:
            row = self._select_one(ref)
            if row is None:
                return None
            job = _job(row)
            properties = with_webhooks(job.properties, webhooks)
            self._db.execute(
                "UPDATE jobs SET properties=?, modified_at=? WHERE seq=?",
                (json.dumps(properties), now, job.seq),
            )
            return _job(self._select_one(ref)).view()

    def pending_webhooks(self, now: float) -> list[tuple[StoredJob, str, dict[str, str], int]]:
        """``(job, webhook name, webhook, attempts so far)`` of every ended job's webhook
        not yet delivered (nor given up) and due at ``now``."""
        marks = ",".join("?" * len(TERMINAL))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE status IN ({marks}) AND "
                "json_extract(properties, '$.notificationSetting.webhooks') IS NOT NULL "
                "ORDER BY seq",
                tuple(TERMINAL),
            ).fetchall()
            deliveries = {
                (seq, name): (attempts, next_at, done)
                for seq, name, attempts, next_at, done in self._db.execute(
                    "SELECT job_seq, name, attempts, next_at, done FROM webhook_deliveries"
                )
            }
        pending = []
        for row in rows:
            job = _job(row)
            for name, webhook in webhooks_of(job.properties).items():
                attempts, next_at, done = deliveries.get((job.seq, name), (0, 0.0, 0))
                if not done and next_at <= now:
                    pending.append((job, name, dict(webhook), attempts))
        return pending

    def record_webhook(
        self, seq: int, name: str, *, attempts: int, done: bool, outcome: str, next_at: float
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO webhook_deliveries (job_seq, name, attempts, next_at, done, outcome) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (job_seq, name) DO UPDATE SET "
                "attempts=excluded.attempts, next_at=excluded.next_at, done=excluded.done, "
                "outcome=excluded.outcome",
                (seq, name, attempts, next_at, int(done), outcome),
            )

    def webhook_outcomes(self, ref: JobRef) -> dict[str, str]:
        """What became of each of the job's webhooks (``delivered``, ``not sent: …``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.name, d.outcome FROM webhook_deliveries d JOIN jobs j "
                "ON j.seq = d.job_seq WHERE j.subscription=? AND j.resource_group=? "
                "AND j.workspace=? AND j.name=?",
                _key(ref),
            ).fetchall()
        return {name: outcome for name, outcome in rows}

    # -- component versions ----------------------------------------------------------------

    def get_component(
        self, workspace: WorkspaceRef, name: str, version: str
    ) -> dict[str, Any] | None:
        """The component version's ``ComponentVersionResource``, ``None`` when unknown."""
        with self._lock:
            found = self._component_row(workspace, name, version)
        if found is None:
            return None
        return component_document(workspace, name, version, *found)

    def put_component(
        self, workspace: WorkspaceRef, name: str, version: str, properties: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Register a component version (``True``) or find the same one again (``False``);
        a different ``componentSpec`` for an existing version is a 400."""
        now = self.now()
        with self._lock:
            found = self._component_row(workspace, name, version)
            if found is not None:
                if found[0].get("componentSpec") != properties.get("componentSpec"):
                    raise ArmError(
                        400,
                        "UserError",
                        f"The component '{name}' version '{version}' exists with another "
                        "componentSpec; a version cannot change: register a new version.",
                    )
                return component_document(workspace, name, version, *found), False
            self._db.execute(
                "INSERT INTO components (subscription, resource_group, workspace, name, "
                "version, properties, created_at, modified_at) VALUES (?,?,?,?,?,?,?,?)",
                (*_workspace_key(workspace), name, version, json.dumps(properties), now, now),
            )
        return component_document(workspace, name, version, dict(properties), now, now), True

    def _component_row(
        self, workspace: WorkspaceRef, name: str, version: str
    ) -> tuple[dict[str, Any], float, float] | None:
        row = self._db.execute(
            "SELECT properties, created_at, modified_at FROM components WHERE subscription=? "
            "AND resource_group=? AND workspace=? AND name=? AND version=?",
            (*_workspace_key(workspace), name, version),
        ).fetchone()
        return None if row is None else (json.loads(row[0]), row[1], row[2])

    def cancel_job(self, ref: JobRef) -> CancelResult:
        now = self.now()
        with self._lock:
            row = self._select_one(ref)
            if row is None:
                return CancelResult(CancelOutcome.NOT_FOUND)
            job = _job(row)
            if job.status in TERMINAL:
                return CancelResult(CancelOutcome.ALREADY_TERMINAL)
            if job.status != JobStatus.CANCEL_REQUESTED.value:
                self._db.execute(
                    "UPDATE jobs SET status=?, modified_at=? WHERE seq=?",
                    (JobStatus.CANCEL_REQUESTED.value, now, job.seq),
                )
            operation_id = str(uuid.uuid4())
            self._db.execute(
                "INSERT INTO operations (id, job_seq, created_at) VALUES (?,?,?)",
                (operation_id, job.seq, now),
            )
        return CancelResult(CancelOutcome.ACCEPTED, operation_id)

    def operation_done(self, operation_id: str) -> bool | None:
        with self._lock:
            row = self._db.execute(
                "SELECT jobs.status FROM operations JOIN jobs ON jobs.seq = operations.job_seq "
                "WHERE operations.id=?",
                (operation_id,),
            ).fetchone()
        return None if row is None else row[0] in TERMINAL

    # -- for the runner --------------------------------------------------------------------

    def find(self, ref: JobRef) -> StoredJob | None:
        with self._lock:
            row = self._select_one(ref)
        return _job(row) if row else None

    def jobs_in(self, statuses: Iterable[str]) -> list[StoredJob]:
        """The jobs that run a command (every job but pipelines) in one of ``statuses``."""
        return self._select_in(statuses, pipelines=False)

    def pipelines_in(self, statuses: Iterable[str]) -> list[StoredJob]:
        """The pipeline jobs in one of ``statuses``."""
        return self._select_in(statuses, pipelines=True)

    def children_of(self, parent: JobRef) -> list[StoredJob]:
        """The steps of pipeline ``parent``, in creation order."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE subscription=? AND resource_group=? "
                "AND workspace=? AND parent=? ORDER BY seq",
                (*_key(parent)[:3], parent.name),
            ).fetchall()
        return [_job(row) for row in rows]

    def _select_in(self, statuses: Iterable[str], *, pipelines: bool) -> list[StoredJob]:
        wanted = list(statuses)
        marks = ",".join("?" * len(wanted))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE status IN ({marks}) AND is_pipeline=? "
                "ORDER BY seq",
                (*wanted, int(pipelines)),
            ).fetchall()
        return [_job(row) for row in rows]

    def status_of(self, seq: int) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT status FROM jobs WHERE seq=?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def transition(
        self,
        seq: int,
        expected: Iterable[str],
        status: str,
        *,
        pid: int | None = None,
        exit_code: int | None = None,
        error: str | None = None,
        error_code: str | None = None,
        started_at: float | None = None,
        ended_at: float | None = None,
    ) -> bool:
        """Set ``status`` (and any given field) if the job's status is one of ``expected``.
        A terminal ``status`` sets ``ended_at`` to now unless given."""
        now = self.now()
        if status in TERMINAL and ended_at is None:
            ended_at = now
        sets = ["status=?", "modified_at=?"]
        values: list[Any] = [status, now]
        for column, value in (
            ("pid", pid),
            ("exit_code", exit_code),
            ("error", error),
            ("error_code", error_code),
            ("started_at", started_at),
            ("ended_at", ended_at),
        ):
            if value is not None:
                sets.append(f"{column}=?")
                values.append(value)
        wanted = list(expected)
        marks = ",".join("?" * len(wanted))
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE seq=? AND status IN ({marks})",
                (*values, seq, *wanted),
            )
            return cursor.rowcount == 1

    def _planned(self, ref: JobRef, properties: dict[str, Any]) -> dict[str, Any]:
        run_dir = run_directory(runs_root(self.data_dir), ref)
        try:
            plan = plan_run(ref.name, properties, run_dir)
        except JobSetupError as exc:
            raise ArmError(400, "UserError", str(exc)) from None
        return with_output_uris(properties, plan)

    def _select_one(self, ref: JobRef) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE subscription=? AND resource_group=? "
            "AND workspace=? AND name=?",
            _key(ref),
        ).fetchone()
        return row


def _key(ref: JobRef) -> tuple[str, str, str, str]:
    ws = ref.workspace
    return ws.subscription, ws.resource_group, ws.workspace, ref.name


def _workspace_key(workspace: WorkspaceRef) -> tuple[str, str, str]:
    return workspace.subscription, workspace.resource_group, workspace.workspace


def _job(row: tuple[Any, ...] | None) -> StoredJob:
    assert row is not None
    seq, sub, rg, ws, name, properties, status, created, modified, pid, exit_code, error = row[:12]
    started, ended, error_code, parent = row[12:16]
    return StoredJob(
        seq=seq,
        ref=JobRef(WorkspaceRef(sub, rg, ws), name),
        properties=json.loads(properties),
        status=status,
        created_at=created,
        modified_at=modified,
        pid=pid,
        exit_code=exit_code,
        error=error,
        started_at=started,
        ended_at=ended,
        error_code=error_code,
        parent=parent,
    )


def _parse_skip_token(token: str | None) -> int:
    if token is None:
        return 0
    if not token.isdigit():
        raise ArmError(400, "UserError", f"The $skipToken {token!r} is not valid.")
    return int(token)
