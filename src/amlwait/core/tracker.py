"""Per-job tracking: what each job is doing, when to read it next, when it is done.

Sans-IO. The waiter feeds observations in (:meth:`BatchTracker.observe`) with the time
they were made; the tracker answers which jobs are due (:meth:`BatchTracker.due`), when
the next one will be (:meth:`BatchTracker.next_wake`), and returns the events a user
should hear about. It never reads a clock itself.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from amlwait.core.duration import format_duration
from amlwait.core.jobs import JobRef, JobSnapshot, studio_url_for
from amlwait.core.policy import PollPolicy
from amlwait.core.status import (
    STALL_AFTER_SECONDS,
    SUSPECT,
    TERMINAL,
    UNCLEAR,
    Outcome,
    outcome_of_terminal,
)


class BatchOutcome(str, enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    # The wait itself broke (a refused credential, an internal error): the reports still
    # say what was known of every job when it did.
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class JobState:
    """What the wait knows of one job attempt.

    ``reason``: why it ended badly — the service's error message for a Failed job (with
    its ``error_code``, e.g. ``UserError``), "reason unavailable (…)" when that could not
    be read, or the waiter's own words (not found, NotResponding, unfinished).
    ``started_at``/``ended_at``: when the job really started and ended (epoch seconds) as
    Azure ML recorded them; ``None`` when not read (then reports fall back to what the
    waiter saw: :attr:`created_at` or :attr:`first_seen` to :attr:`finished_at`).
    """

    ref: JobRef
    status: str | None = None
    outcome: Outcome | None = None
    reason: str | None = None
    first_seen: float | None = None
    status_since: float | None = None
    finished_at: float | None = None
    last_read: float | None = None
    interval: float | None = None
    next_due: float = -math.inf
    missing_since: float | None = None
    studio_url: str | None = None
    created_at: str | None = None
    history: list[tuple[float, str]] = field(default_factory=list)
    stall_warned_at: float | None = None
    attempt: int = 1
    retry_of: JobRef | None = None
    retried_as: JobRef | None = None
    error_code: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    experiment: str | None = None

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def finished(self) -> bool:
        """Ended for good (an unfinished job at the end of a wait is not finished)."""
        return self.outcome is not None and self.outcome is not Outcome.UNFINISHED

    @property
    def current(self) -> bool:
        """The newest attempt of its job (earlier attempts were retried)."""
        return self.retried_as is None

    @property
    def link(self) -> str:
        return self.studio_url or studio_url_for(self.ref)


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusChanged:
    job: JobState
    old: str | None
    new: str
    at: float
    in_previous: float | None  # seconds spent in ``old`` as far as the waiter saw


@dataclass(frozen=True)
class JobFinished:
    job: JobState
    outcome: Outcome
    at: float


@dataclass(frozen=True)
class JobMissing:
    job: JobState
    at: float


@dataclass(frozen=True)
class JobRetried:
    """A Failed attempt was resubmitted as ``new`` (attempt ``new.attempt``)."""

    old: JobState
    new: JobState
    at: float


@dataclass(frozen=True)
class Warning_:
    """Something a user should look at: a stall, NotResponding, Unknown."""

    job: JobState
    kind: str  # "stall" | "suspect" | "unknown"
    message: str
    at: float


Event = StatusChanged | JobFinished | JobMissing | JobRetried | Warning_


class BatchTracker:
    def __init__(
        self,
        refs: Iterable[JobRef],
        policy: PollPolicy,
        started_at: float,
        stall_after: Mapping[str, float] = STALL_AFTER_SECONDS,
    ) -> None:
        self.policy = policy
        self.started_at = started_at
        self.stall_after = dict(stall_after)
        self.jobs: dict[JobRef, JobState] = {}
        # When each job is due, as a heap with lazy deletion: an entry is stale once its
        # job is finished or was rescheduled. Keeps a wake O(log N) for 10,000 jobs.
        self._queue: list[tuple[float, int, JobRef]] = []
        self._order = itertools.count()
        self.finished_count = 0
        # Jobs an event said changed (``read_now``): read on their own, at once.
        self.woken: set[JobRef] = set()
        self._by_name: dict[str, list[JobRef]] = {}  # an event names a job, not a workspace
        for ref in refs:
            if ref in self.jobs:
                raise ValueError(f"job {ref.name} is listed twice in {ref.workspace}")
            self.jobs[ref] = JobState(ref=ref)
            self._by_name.setdefault(ref.name, []).append(ref)
            self._push(self.jobs[ref])
        if not self.jobs:
            raise ValueError("no jobs to wait for")

    # -- questions ----------------------------------------------------------------------

    def current(self) -> list[JobState]:
        """The newest attempt of every job."""
        return [job for job in self.jobs.values() if job.current]

    def newest_attempts(self) -> list[JobRef]:
        """The newest attempt of every job, in the order the jobs were first listed."""
        newest = []
        for job in self.jobs.values():
            if job.retry_of is not None:
                continue
            while job.retried_as is not None:
                job = self.jobs[job.retried_as]
            newest.append(job.ref)
        return newest

    def unfinished(self) -> list[JobState]:
        return [job for job in self.jobs.values() if not job.finished]

    def _push(self, job: JobState) -> None:
        heapq.heappush(self._queue, (job.next_due, next(self._order), job.ref))

    def _is_stale(self, entry: tuple[float, int, JobRef]) -> bool:
        job = self.jobs[entry[2]]
        return job.finished or job.next_due != entry[0]

    def due(self, now: float) -> list[JobState]:
        """The unfinished jobs due by ``now``, most overdue first; each is expected to be
        read (and so rescheduled) by the caller."""
        jobs: list[JobState] = []
        seen: set[JobRef] = set()
        while self._queue and self._queue[0][0] <= now:
            entry = heapq.heappop(self._queue)
            if self._is_stale(entry) or entry[2] in seen:
                continue
            seen.add(entry[2])
            jobs.append(self.jobs[entry[2]])
        # Reading them reschedules them; until then they stay due.
        for job in jobs:
            self._push(job)
        return jobs

    def read_now(self, name: str, now: float) -> bool:
        """Make every unfinished job called ``name`` due at ``now`` (an event said it
        changed). Polling stays the truth: this only brings its next read forward."""
        woken = False
        for job in (self.jobs[ref] for ref in self._by_name.get(name, ())):
            if not job.finished:
                self.woken.add(job.ref)
                if job.next_due > now:
                    job.next_due = now
                    self._push(job)
                woken = True
        return woken

    def read_all_by(self, moment: float) -> None:
        """Bring every unfinished job's next read forward to ``moment`` at the latest
        (the wait stopped reading MLflow: ARM's own schedule takes over at once)."""
        for job in self.jobs.values():
            if not job.finished and job.next_due > moment:
                job.next_due = moment
                self._push(job)

    def next_wake(self) -> float:
        while self._queue and self._is_stale(self._queue[0]):
            heapq.heappop(self._queue)
        return self._queue[0][0] if self._queue else math.inf

    @property
    def all_finished(self) -> bool:
        return all(job.finished for job in self.jobs.values())

    @property
    def any_bad(self) -> bool:
        return any(job.outcome is not None and job.outcome.is_bad for job in self.current())

    def counts(self) -> Counter[str]:
        """Jobs per outcome, with unfinished jobs counted by their last status."""
        counts: Counter[str] = Counter()
        for job in self.current():
            if job.finished and job.outcome is not None:
                counts[job.outcome.value] += 1
            else:
                counts[job.status or "NotFound"] += 1
        return counts

    def outcome(self, *, interrupted: bool = False) -> BatchOutcome:
        if self.any_bad:
            return BatchOutcome.FAILED
        if all(job.outcome is Outcome.SUCCEEDED for job in self.current()):
            return BatchOutcome.SUCCEEDED
        return BatchOutcome.INTERRUPTED if interrupted else BatchOutcome.TIMED_OUT

    # -- observations -------------------------------------------------------------------

    def observe(
        self,
        ref: JobRef,
        snapshot: JobSnapshot | None,
        now: float,
        *,
        batch_due: float | None = None,
    ) -> list[Event]:
        """Record one read of ``ref`` made at ``now``.

        ``batch_due``: the job is read with its batch, by a LIST due at that moment (the
        batch backs off as a whole, see :class:`PollPolicy`), not on its own schedule: a
        page costs one request whatever it holds.
        """
        job = self.jobs[ref]
        self.woken.discard(ref)
        if job.finished:
            return []
        job.last_read = now
        if snapshot is None:
            return self._observe_missing(job, now)
        return self._observe_status(job, snapshot, now, batch_due=batch_due)

    def _observe_missing(self, job: JobState, now: float) -> list[Event]:
        events: list[Event] = []
        if job.missing_since is None:
            job.missing_since = now
            events.append(JobMissing(job, now))
        self._schedule(job, now, changed=False)
        grace_ends = job.missing_since + self.policy.not_found_grace
        if now >= grace_ends:
            missing_for = format_duration(now - job.missing_since)
            events.append(self._finish(job, Outcome.NOT_FOUND, now, f"not found for {missing_for}"))
        else:
            self._due_by(job, now, grace_ends)
        return events

    def _observe_status(
        self,
        job: JobState,
        snapshot: JobSnapshot,
        now: float,
        *,
        batch_due: float | None = None,
    ) -> list[Event]:
        events: list[Event] = []
        job.missing_since = None
        if job.first_seen is None:
            job.first_seen = now
        job.studio_url = snapshot.studio_url or job.studio_url
        job.created_at = snapshot.created_at or job.created_at
        job.experiment = snapshot.experiment or job.experiment
        new = snapshot.status
        changed = new != job.status
        if changed:
            in_previous = None if job.status_since is None else now - job.status_since
            events.append(StatusChanged(job, job.status, new, now, in_previous))
            job.status = new
            job.status_since = now
            job.stall_warned_at = None
            job.history.append((now, new))
        self._schedule(job, now, changed=changed, batch_due=batch_due)
        since = job.status_since if job.status_since is not None else now

        if new in TERMINAL:
            events.append(self._finish(job, outcome_of_terminal(new), now, None))
        elif new in SUSPECT:
            grace_ends = since + self.policy.suspect_grace
            if now >= grace_ends:
                reason = f"{new} for {format_duration(now - since)}"
                events.append(self._finish(job, Outcome.FAILED, now, reason))
            else:
                self._due_by(job, now, grace_ends)
                if changed:
                    grace = format_duration(self.policy.suspect_grace)
                    message = f"{job.name} is {new}; it fails if still {new} after {grace}"
                    events.append(Warning_(job, "suspect", message, now))
        elif new in UNCLEAR:
            if changed:
                message = f"{job.name} reports status {new}; still waiting"
                events.append(Warning_(job, "unknown", message, now))
        else:
            stall_after = self.stall_after.get(new)
            stalled = stall_after is not None and now - since >= stall_after
            if stalled and job.stall_warned_at is None:
                job.stall_warned_at = now
                message = f"{job.name} has been {new} for {format_duration(now - since)}"
                events.append(Warning_(job, "stall", message, now))
        return events

    def _schedule(
        self, job: JobState, now: float, *, changed: bool, batch_due: float | None = None
    ) -> None:
        if batch_due is not None and batch_due > now:
            job.interval = batch_due - now
        else:
            job.interval = self.policy.next_interval(job.interval, changed)
        job.next_due = now + job.interval
        self._push(job)

    def _due_by(self, job: JobState, now: float, moment: float) -> None:
        """Read again by ``moment`` (a grace ending), but never within the poll interval."""
        job.next_due = max(now + self.policy.poll_interval, min(job.next_due, moment))
        self._push(job)

    def _finish(self, job: JobState, outcome: Outcome, now: float, reason: str | None) -> Event:
        job.outcome = outcome
        job.finished_at = now
        job.reason = reason
        self.finished_count += 1
        return JobFinished(job, outcome, now)

    def retry(self, old: JobRef, new: JobRef, now: float) -> JobRetried:
        """``old`` (a Failed attempt) was resubmitted as ``new``: follow ``new`` instead."""
        previous = self.jobs[old]
        if new in self.jobs:
            raise ValueError(f"job {new.name} is already followed")
        previous.outcome = Outcome.RETRIED
        previous.retried_as = new
        why = f"{previous.error_code}: {previous.reason}" if previous.error_code else None
        previous.reason = f"{why or previous.status}; retried as {new.name}"
        state = JobState(ref=new, attempt=previous.attempt + 1, retry_of=old)
        self.jobs[new] = state
        self._by_name.setdefault(new.name, []).append(new)
        self.finished_count -= 1  # the old attempt no longer counts; the new one is going
        self._push(state)
        return JobRetried(previous, state, now)

    def close(self, now: float) -> None:
        """The wait is over: every job still going is unfinished."""
        for job in self.unfinished():
            job.outcome = Outcome.UNFINISHED
            job.reason = "still " + (job.status or "not found") + " when the wait ended"
