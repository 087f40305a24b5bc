"""How a wait ended: :class:`WaitResult`, its JSON, and what every report reads of it.

The reports (console, JUnit, Markdown summary, HTML, the pipeline's variables) import
this module, never the engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from amlwait.core.status import Outcome
from amlwait.core.tracker import BatchOutcome, JobState


@dataclass(frozen=True)
class WaitResult:
    outcome: BatchOutcome
    jobs: Sequence[JobState]
    requests: int
    started_at: float
    ended_at: float
    deadline: float
    canceled: Sequence[str] = ()
    tag: str | None = None
    error: str | None = None  # with outcome "error": the one line the user was shown

    def to_json(self) -> dict[str, Any]:
        """The machine-readable result of ``amlwait wait --json`` (``error`` only when the
        wait itself broke: outcome ``error``)."""
        document = {
            "outcome": self.outcome.value,
            "jobs": [_job_json(job) for job in self.jobs],
            "requests": self.requests,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "canceled": list(self.canceled),
        }
        if self.error is not None:
            document["error"] = self.error
        return document


def _job_json(job: JobState) -> dict[str, Any]:
    return {
        "name": job.name,
        "workspace": job.ref.workspace.workspace,
        "resource_group": job.ref.workspace.resource_group,
        "subscription": job.ref.workspace.subscription,
        "status": job.status,
        "outcome": job.outcome.value if job.outcome else "unfinished",
        "reason": job.reason,
        "studio_url": job.link,
        "first_seen": _iso(job.first_seen),
        "finished_at": _iso(job.finished_at),
        "history": [{"status": s, "at": _iso(at)} for at, s in job.history],
        "attempt": job.attempt,
        "retry_of": job.retry_of.name if job.retry_of else None,
        "retried_as": job.retried_as.name if job.retried_as else None,
    }


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    stamp = dt.datetime.fromtimestamp(moment, tz=dt.timezone.utc)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def run_time(job: JobState) -> float | None:
    """How long the job took, as far as we know: from its creation (or from when the
    waiter first saw it) to when the waiter saw it end."""
    end = job.finished_at
    start = _parse_iso(job.created_at) or job.first_seen
    if end is None or start is None:
        return None
    return max(0.0, end - start)


def sort_for_report(jobs: Sequence[JobState]) -> list[JobState]:
    """Failed and unfinished jobs first, then the slowest."""

    def key(job: JobState) -> tuple[int, float, str]:
        rank = (
            0
            if job.outcome is not None and job.outcome.is_bad
            else (1 if job.outcome in (None, Outcome.UNFINISHED) else 2)
        )
        return (rank, -(run_time(job) or 0.0), job.name)

    return sorted(jobs, key=key)
