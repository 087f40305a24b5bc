"""Azure ML's job status vocabulary and what each status means for a waiter.

Azure ML reports fifteen statuses (the ``JobStatus`` enum of the REST API). A waiter
needs to know, for each one, whether the job is still going, has ended well, has ended
badly, or is in a state that *might* be terminal:

- ``SUCCESS``: Completed.
- ``FAILURE``: Failed, Canceled.
- ``SUSPECT``: NotResponding, Paused. The SDK calls them terminal, but NotResponding can
  go back to Running; they count as failures only once they persist past a grace period.
- ``UNCLEAR``: Unknown. Keep waiting and warn.
- ``IN_PROGRESS``: every other status, including post-processing (Finalizing,
  CancelRequested) and Scheduled, which no SDK list names.

An unrecognised string (a status added to the API after this release) is treated as in
progress, so a new status never ends a wait by surprise.
"""

from __future__ import annotations

import enum


class JobStatus(str, enum.Enum):
    NOT_STARTED = "NotStarted"
    SCHEDULED = "Scheduled"
    STARTING = "Starting"
    PROVISIONING = "Provisioning"
    PREPARING = "Preparing"
    QUEUED = "Queued"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    NOT_RESPONDING = "NotResponding"
    PAUSED = "Paused"
    UNKNOWN = "Unknown"

    def __str__(self) -> str:
        return self.value


SUCCESS: frozenset[str] = frozenset({JobStatus.COMPLETED.value})
FAILURE: frozenset[str] = frozenset({JobStatus.FAILED.value, JobStatus.CANCELED.value})
SUSPECT: frozenset[str] = frozenset({JobStatus.NOT_RESPONDING.value, JobStatus.PAUSED.value})
UNCLEAR: frozenset[str] = frozenset({JobStatus.UNKNOWN.value})
TERMINAL: frozenset[str] = SUCCESS | FAILURE
ALL_STATUSES: frozenset[str] = frozenset(s.value for s in JobStatus)

# How long a job may sit in one status before a waiter warns that it looks stuck.
# Chosen from what users report: Preparing for hours (image builds), Finalizing for 12 h+.
STALL_AFTER_SECONDS: dict[str, float] = {
    JobStatus.NOT_STARTED.value: 30 * 60,
    JobStatus.SCHEDULED.value: 60 * 60,
    JobStatus.STARTING.value: 30 * 60,
    JobStatus.PROVISIONING.value: 60 * 60,
    JobStatus.PREPARING.value: 60 * 60,
    JobStatus.QUEUED.value: 4 * 60 * 60,
    JobStatus.FINALIZING.value: 60 * 60,
    JobStatus.CANCEL_REQUESTED.value: 30 * 60,
}


class Outcome(str, enum.Enum):
    """How a job ended, from the waiter's point of view."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    NOT_FOUND = "not_found"
    UNFINISHED = "unfinished"
    RETRIED = "retried"  # this attempt Failed and a newer attempt took its place

    def __str__(self) -> str:
        return self.value

    @property
    def is_bad(self) -> bool:
        return self in (Outcome.FAILED, Outcome.CANCELED, Outcome.NOT_FOUND)


def outcome_of_terminal(status: str) -> Outcome:
    """The outcome of a status in ``TERMINAL`` (or ``SUSPECT`` past its grace)."""
    if status in SUCCESS:
        return Outcome.SUCCEEDED
    if status == JobStatus.CANCELED.value:
        return Outcome.CANCELED
    return Outcome.FAILED
