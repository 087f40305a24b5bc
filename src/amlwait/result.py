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
        "error_code": job.error_code,
        "started_at": _iso_precise(job.started_at),
        "ended_at": _iso_precise(job.ended_at),
        "run_seconds": _rounded(ran_seconds(job)),
        "queued_seconds": _rounded(queued_seconds(job)),
        "times_from": "service" if ran_seconds(job) is not None else "amlwait",
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


def parse_iso(text: str | None) -> float | None:
    """Seconds since the epoch of an ISO-8601 time (``Z`` or an offset); None if none."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _iso_precise(moment: float | None) -> str | None:
    if moment is None:
        return None
    stamp = dt.datetime.fromtimestamp(moment, tz=dt.timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


# What each time in a report means (the reports and the README use these words).
RAN = "ran"  # from the start to the end of the job's run, as Azure ML recorded them
QUEUED = "queued"  # from the job's creation to the start of its run (Azure ML's times)
TOTAL = "total"  # from the job's creation to the end of its run
SEEN = "seen"  # amlwait's own measure: creation (or first read) to the read that saw it end
TIME_LEGEND = (
    "ran = start to end of the run as Azure ML recorded it; "
    "~ = not known to Azure ML's run history/MLflow (or not readable), so amlwait's own "
    "measure: from the job's creation (or its first read) to the read that saw it end"
)


def ran_seconds(job: JobState) -> float | None:
    """How long the job's run took by Azure ML's own start and end times; ``None`` when
    those were not read (or the job never started)."""
    if job.started_at is None or job.ended_at is None:
        return None
    return max(0.0, job.ended_at - job.started_at)


def queued_seconds(job: JobState) -> float | None:
    """From the job's creation to the start of its run; ``None`` when either is unknown."""
    created = parse_iso(job.created_at)
    if created is None or job.started_at is None:
        return None
    return max(0.0, job.started_at - created)


def total_seconds(job: JobState) -> float | None:
    """From the job's creation to the end of its run (Azure ML's end time, else when the
    waiter saw it end)."""
    created = parse_iso(job.created_at)
    end = job.ended_at if job.ended_at is not None else job.finished_at
    if created is None or end is None:
        return None
    return max(0.0, end - created)


def seen_seconds(job: JobState) -> float | None:
    """amlwait's own measure: from the job's creation (or from when the waiter first saw
    it) to when the waiter saw it end. For a job that ended before the wait began this is
    its age, not its run time."""
    end = job.finished_at
    start = parse_iso(job.created_at) or job.first_seen
    if end is None or start is None:
        return None
    return max(0.0, end - start)


def run_time(job: JobState) -> float | None:
    """How long the job ran: :func:`ran_seconds` when Azure ML's times are known, else
    :func:`seen_seconds` (see :func:`run_time_label`)."""
    ran = ran_seconds(job)
    return ran if ran is not None else seen_seconds(job)


def run_time_label(job: JobState) -> str:
    """:data:`RAN` when :func:`run_time` is Azure ML's, :data:`SEEN` when it is amlwait's."""
    return RAN if ran_seconds(job) is not None else SEEN


def format_run_time(job: JobState) -> str:
    """``2.3s`` (Azure ML's run time), ``~4m23s`` (amlwait's own measure), or ``-``."""
    from amlwait.core.duration import format_duration

    took = run_time(job)
    if took is None:
        return "-"
    return format_duration(took) if run_time_label(job) == RAN else "~" + format_duration(took)


def reason_text(job: JobState, limit: int | None = None, *, one_line: bool = True) -> str:
    """Why the job ended as it did: ``UserError: message`` (the service's code and
    message), else the waiter's words; ``""`` when there is nothing to say. ``one_line``
    folds line breaks and runs of spaces into one space. With ``limit``, a longer text
    keeps its end (where a traceback's last line and a process's last stderr lines are)
    behind ``… ``."""
    if not job.reason:
        return ""
    message = " ".join(job.reason.split()) if one_line else job.reason
    if limit is not None and len(message) > limit:
        message = "… " + message[-(limit - 2) :].lstrip()
    return f"{job.error_code}: {message}" if job.error_code else message


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
