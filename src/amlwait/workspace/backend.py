"""The seam between the HTTP app and where jobs come from.

The app (:mod:`amlwait.workspace.app`) speaks ARM; a :class:`Backend` answers in plain
terms. Two implementations exist: the SQLite store driven by the process runner
(:class:`amlwait.workspace.store.JobStore`) and the scripted timelines
(:class:`amlwait.workspace.scripted.ScriptedBackend`).

Paging is the backend's business: ``list_jobs`` takes the opaque ``$skipToken`` a client
sent back and returns the next one (``None`` on the last page). Backends raise
:class:`amlwait.workspace.errors.ArmError` for a malformed token.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.workspace.document import JobView


class ListView(str, enum.Enum):
    """ARM's ``listViewType``: which jobs a list shows, by their ``isArchived`` flag."""

    ACTIVE_ONLY = "ActiveOnly"
    ARCHIVED_ONLY = "ArchivedOnly"
    ALL = "All"

    def shows(self, archived: bool) -> bool:
        if self is ListView.ALL:
            return True
        return archived == (self is ListView.ARCHIVED_ONLY)


@dataclass(frozen=True)
class ListQuery:
    tag: str | None = None
    view: ListView = ListView.ACTIVE_ONLY
    skip_token: str | None = None
    page_size: int = 100
    include_children: bool = False
    """Whether pipeline steps are listed too (ARM's list leaves them out)."""

    def shows(self, job: JobView) -> bool:
        return self.view.shows(job.is_archived) and (self.tag is None or self.tag in job.tags)


@dataclass(frozen=True)
class ListPage:
    jobs: list[JobView]
    next_skip_token: str | None


class CancelOutcome(enum.Enum):
    NOT_FOUND = "not_found"
    ALREADY_TERMINAL = "already_terminal"
    ACCEPTED = "accepted"


@dataclass(frozen=True)
class CancelResult:
    outcome: CancelOutcome
    operation_id: str | None = None


class Backend(Protocol):
    def now(self) -> float:
        """The backend's time (epoch seconds); request logs and throttling use it too."""
        ...

    def get_job(self, ref: JobRef) -> JobView | None: ...

    def list_jobs(self, workspace: WorkspaceRef, query: ListQuery) -> ListPage: ...

    def put_job(self, ref: JobRef, properties: Mapping[str, Any]) -> tuple[JobView, bool]:
        """Create (``True``) or update (``False``) a job from validated PUT properties."""
        ...

    def cancel_job(self, ref: JobRef) -> CancelResult: ...

    def operation_done(self, operation_id: str) -> bool | None:
        """Whether a cancel operation has finished; ``None`` for an unknown operation."""
        ...
