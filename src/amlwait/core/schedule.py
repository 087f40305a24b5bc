"""Which reads a wake makes: one LIST per workspace of a tagged batch, or GETs.

Sans-IO, like :mod:`amlwait.core.tracker`: the engine asks :meth:`ListingSchedule.plan`
what to send for the jobs that are due, sends it, and hands each listing back to
:meth:`ListingSchedule.take_listing`, which says which entries to feed the tracker, when
that workspace is listed next and which jobs to GET because the listing lacked them.

The rules, per workspace:

- Without a tag, or when every due job was missing from an earlier listing, each due job
  is read by GET (``batch_due`` None: it keeps its own per-job back-off).
- With a tag, the due jobs are read by one paged LIST of the batch, unless an event woke
  them before the next listing is due: when they are at most ``max(concurrency, listed //
  100)`` (``listed``: how many of our jobs the last listing held) and all woken, every
  due job of that workspace is read by GET with ``batch_due`` = the next listing, so the
  batch keeps its schedule (GETs are cheaper than listing the whole batch).
- The batch backs off as a whole (one page costs one request, whatever it holds): with
  ``previous`` the last listing's interval (none before the first), the next listing is
  due at ``now + interval``, ``interval = policy.next_interval(previous, changed)``:
  ``poll_interval`` when any unfinished job listed changed status (or on the first
  listing), otherwise ``min(max_poll_interval, max(poll_interval, previous * backoff))``
  (``backoff`` 1.5 by default: 15 s, 22.5 s, 33.75 s … up to 2 min).
- A large batch is listed no faster than its pages allow: ``interval`` is at least
  ``SECONDS_PER_PAGE`` for each ``PAGE_SIZE`` jobs the last listing held (capped at
  ``max_poll_interval``), so one batch's listing keeps to under one request per
  ``SECONDS_PER_PAGE`` whatever its size (10,000 jobs: every 2 min, not every 15 s) and
  its requests per job do not grow with the batch. Batches of up to 1,200 jobs are not
  slowed by it.
- A due job the listing lacks (not tagged, or not created yet) is read by GET now and
  counts as absent from listings until a listing holds it again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from amlwait.core.jobs import JobRef, JobSnapshot, WorkspaceRef
from amlwait.core.policy import PollPolicy
from amlwait.core.tracker import JobState

# ARM's Jobs_List pages (a job list of L jobs costs about L / PAGE_SIZE requests), and the
# least seconds between listings for each page of the batch (see the module docstring).
PAGE_SIZE = 100
SECONDS_PER_PAGE = 1.2


def listing_floor(policy: PollPolicy, listed: int) -> float:
    """The least interval between two listings of ``listed`` jobs under ``policy``."""
    pages = math.ceil(listed / PAGE_SIZE)
    return min(policy.max_poll_interval, pages * SECONDS_PER_PAGE)


@dataclass(frozen=True)
class GetJob:
    """Read ``ref`` by GET; ``batch_due``: the moment its batch is listed next, if any."""

    ref: JobRef
    batch_due: float | None = None


@dataclass(frozen=True)
class ListJobs:
    """Read the batch in ``workspace`` by LIST; ``due`` are its jobs due at this wake."""

    workspace: WorkspaceRef
    due: Sequence[JobState]


Read = GetJob | ListJobs


@dataclass(frozen=True)
class ListingRead:
    """What one listing means: the unfinished jobs it held with their snapshots (to feed
    the tracker with ``batch_due``), when the workspace is listed next, and the due jobs
    it lacked (to read by GET at once)."""

    observed: Sequence[tuple[JobState, JobSnapshot]]
    batch_due: float
    missing: Sequence[JobRef]


class ListingSchedule:
    """The per-workspace listing state of one wait, and the decisions taken from it.

    ``tag`` None: the batch has no tag, so every read is a GET. ``concurrency`` is the
    engine's request concurrency (the least number of woken jobs read by GET instead of
    a LIST). The caller sets :attr:`policy` when the wait's polling policy changes.
    """

    def __init__(self, policy: PollPolicy, *, tag: str | None, concurrency: int) -> None:
        self.policy = policy
        self.tag = tag
        self.concurrency = concurrency
        self._intervals: dict[WorkspaceRef, float] = {}
        self._next_listing: dict[WorkspaceRef, float] = {}
        self._listed: dict[WorkspaceRef, int] = {}
        self._names: dict[WorkspaceRef, tuple[int, dict[str, JobState]]] = {}
        self._absent: set[JobRef] = set()

    def next_listing(self, workspace: WorkspaceRef) -> float:
        """When ``workspace`` is listed next (``-inf`` before its first listing)."""
        return self._next_listing.get(workspace, -math.inf)

    def plan(self, due: Sequence[JobState], now: float, woken: Set[JobRef]) -> list[Read]:
        """The reads for the jobs ``due`` at ``now``, workspace by workspace in the order
        the due jobs first name them; ``woken``: the jobs an event asked to read now."""
        by_workspace: dict[WorkspaceRef, list[JobState]] = {}
        for job in due:
            by_workspace.setdefault(job.ref.workspace, []).append(job)
        reads: list[Read] = []
        for workspace, jobs in by_workspace.items():
            listable = [job for job in jobs if job.ref not in self._absent]
            if self.tag is None or not listable:
                reads.extend(GetJob(job.ref) for job in jobs)
            elif self._only_woken(workspace, listable, now, woken):
                batch_due = self._next_listing[workspace]
                reads.extend(GetJob(job.ref, batch_due=batch_due) for job in jobs)
            else:
                reads.append(ListJobs(workspace, jobs))
        return reads

    def _only_woken(
        self, workspace: WorkspaceRef, due: list[JobState], now: float, woken: Set[JobRef]
    ) -> bool:
        """Whether the due jobs are few, all woken by an event, before the batch's next
        listing: then GETs are cheaper than listing the whole batch."""
        if self.next_listing(workspace) <= now:
            return False
        few = max(self.concurrency, self._listed.get(workspace, 0) // 100)
        return len(due) <= few and all(job.ref in woken for job in due)

    def take_listing(
        self,
        read: ListJobs,
        listing: Sequence[JobSnapshot],
        jobs: Mapping[JobRef, JobState],
        now: float,
    ) -> ListingRead:
        """Record the listing of ``read.workspace`` seen at ``now``; ``jobs``: every job of
        the wait (the tracker's), matched to the listing by name. Finished jobs stay in a
        listing: they count as held but are not observed again."""
        names = self._ours(read.workspace, jobs)
        listed = [(names[s.name], s) for s in listing if s.name in names]
        observed = [(job, snapshot) for job, snapshot in listed if not job.finished]
        changed = any(job.status != snapshot.status for job, snapshot in observed)
        interval = max(
            self.policy.next_interval(self._intervals.get(read.workspace), changed),
            listing_floor(self.policy, len(listing)),
        )
        self._intervals[read.workspace] = interval
        self._next_listing[read.workspace] = batch_due = now + interval
        self._listed[read.workspace] = len(listed)
        seen = {job.ref for job, _ in listed}
        self._absent.difference_update(job.ref for job, _ in observed)
        missing = [job.ref for job in read.due if job.ref not in seen]
        self._absent.update(missing)
        return ListingRead(observed, batch_due, missing)

    def listing_failed(self, read: ListJobs, now: float) -> None:
        """The listing of ``read.workspace`` was unusable at ``now`` (its due jobs are read
        by GET instead): list it again one interval later; conclude nothing about the jobs
        it lacked."""
        interval = self._intervals.get(read.workspace, self.policy.poll_interval)
        self._next_listing[read.workspace] = now + interval

    def _ours(
        self, workspace: WorkspaceRef, jobs: Mapping[JobRef, JobState]
    ) -> dict[str, JobState]:
        """Our jobs in ``workspace`` by name (which keeps 10,000 jobs a page cheap),
        rebuilt when the number of jobs changes (a retry adds an attempt)."""
        count, names = self._names.get(workspace, (-1, {}))
        if count != len(jobs):
            names = {job.name: job for job in jobs.values() if job.ref.workspace == workspace}
            self._names[workspace] = (len(jobs), names)
        return names
