"""The listing schedule's decisions, without any I/O: which reads a wake makes, when a
workspace is listed next, which jobs are read by GET instead."""

from __future__ import annotations

import math

import pytest

from amlwait.core.jobs import JobRef, JobSnapshot, WorkspaceRef
from amlwait.core.policy import PollPolicy
from amlwait.core.schedule import GetJob, ListingSchedule, ListJobs
from amlwait.core.status import Outcome
from amlwait.core.tracker import JobState

WS = WorkspaceRef("sub", "rg", "ws")
OTHER = WorkspaceRef("sub", "rg", "other")
POLICY = PollPolicy(poll_interval=15.0, max_poll_interval=60.0)


def jobs_in(workspace: WorkspaceRef, *names: str, status: str = "Running") -> list[JobState]:
    return [JobState(ref=JobRef(workspace, name), status=status) for name in names]


def by_ref(*groups: list[JobState]) -> dict[JobRef, JobState]:
    return {job.ref: job for group in groups for job in group}


def snapshots(*pairs: tuple[str, str]) -> list[JobSnapshot]:
    return [JobSnapshot(name=name, status=status) for name, status in pairs]


def tagged(concurrency: int = 16) -> ListingSchedule:
    return ListingSchedule(POLICY, tag="batch-1", concurrency=concurrency)


def test_without_a_tag_every_due_job_is_read_by_get_on_its_own_schedule() -> None:
    due = jobs_in(WS, "A", "B") + jobs_in(OTHER, "C")
    schedule = ListingSchedule(POLICY, tag=None, concurrency=16)
    assert schedule.plan(due, 0.0, set()) == [
        GetJob(JobRef(WS, "A")),
        GetJob(JobRef(WS, "B")),
        GetJob(JobRef(OTHER, "C")),
    ]


def test_with_a_tag_each_workspace_is_listed_once_in_the_order_its_jobs_fell_due() -> None:
    first, second = jobs_in(OTHER, "C"), jobs_in(WS, "A", "B")
    due = [second[0], first[0], second[1]]
    reads = tagged().plan(due, 0.0, set())
    assert reads == [ListJobs(WS, [second[0], second[1]]), ListJobs(OTHER, first)]


def test_an_unchanged_batch_backs_off_by_one_and_a_half_up_to_the_maximum() -> None:
    schedule = tagged()
    jobs = jobs_in(WS, "A", "B")
    read = ListJobs(WS, jobs)
    listing = snapshots(("A", "Running"), ("B", "Running"))
    now, intervals = 0.0, []
    for _ in range(6):
        seen = schedule.take_listing(read, listing, by_ref(jobs), now)
        intervals.append(seen.batch_due - now)
        assert schedule.next_listing(WS) == seen.batch_due
        now = seen.batch_due
    # The first listing has no previous interval: poll_interval.
    assert intervals == [15.0, 22.5, 33.75, 50.625, 60.0, 60.0]


def test_a_status_change_of_any_unfinished_job_lists_the_batch_again_after_poll_interval() -> None:
    schedule = tagged()
    jobs = jobs_in(WS, "A", "B")
    read = ListJobs(WS, jobs)
    quiet = snapshots(("A", "Running"), ("B", "Running"))
    schedule.take_listing(read, quiet, by_ref(jobs), 0.0)
    assert schedule.take_listing(read, quiet, by_ref(jobs), 15.0).batch_due == 37.5
    changed = snapshots(("A", "Running"), ("B", "Completed"))
    seen = schedule.take_listing(read, changed, by_ref(jobs), 37.5)
    assert seen.batch_due == 52.5
    assert [(job.name, snap.status) for job, snap in seen.observed] == [
        ("A", "Running"),
        ("B", "Completed"),
    ]


@pytest.mark.parametrize(
    ("size", "interval"),
    [
        (100, 15.0),
        (1_200, 15.0),
        (1_201, 15.6),
        (2_000, 24.0),
        (4_000, 48.0),
        (10_000, 120.0),
        (30_000, 120.0),
    ],
)
def test_a_large_batch_is_listed_no_faster_than_its_pages_allow(size: int, interval: float) -> None:
    policy = PollPolicy(poll_interval=15.0, max_poll_interval=120.0)
    schedule = ListingSchedule(policy, tag="batch-1", concurrency=16)
    jobs = jobs_in(WS, *(f"J{i:05d}" for i in range(size)))
    read = ListJobs(WS, jobs)
    running = snapshots(*((job.name, "Running") for job in jobs))
    schedule.take_listing(read, running, by_ref(jobs), 0.0)
    # A change would list it again after poll_interval; its pages keep it to 1.2 s each,
    # up to max_poll_interval.
    changed = snapshots(
        *((job.name, "Completed" if i == 0 else "Running") for i, job in enumerate(jobs))
    )
    seen = schedule.take_listing(read, changed, by_ref(jobs), 100.0)
    assert seen.batch_due - 100.0 == pytest.approx(interval)


def test_finished_jobs_count_as_held_but_are_not_observed_and_do_not_reset_the_back_off() -> None:
    schedule = tagged()
    running = jobs_in(WS, "A")
    done = jobs_in(WS, "B", status="Completed")
    done[0].outcome = Outcome.SUCCEEDED
    read = ListJobs(WS, running)
    # The finished job is listed with a different status than we hold: still no change.
    listing = snapshots(("A", "Running"), ("B", "Failed"))
    schedule.take_listing(read, listing, by_ref(running, done), 0.0)
    seen = schedule.take_listing(read, listing, by_ref(running, done), 15.0)
    assert seen.batch_due == 37.5
    assert [job.name for job, _ in seen.observed] == ["A"]


def test_a_job_the_listing_lacks_is_read_by_get_until_a_listing_holds_it_again() -> None:
    schedule = tagged()
    a, b = jobs_in(WS, "A", "B")
    everyone = by_ref([a, b])
    seen = schedule.take_listing(ListJobs(WS, [a, b]), snapshots(("A", "Running")), everyone, 0.0)
    assert seen.missing == [b.ref]
    # Due alone: the absent job is read by GET, on its own back-off.
    assert schedule.plan([b], 5.0, set()) == [GetJob(b.ref)]
    # Due with a listable job: the batch is listed, and now holds it.
    assert schedule.plan([a, b], 15.0, set()) == [ListJobs(WS, [a, b])]
    both = snapshots(("A", "Running"), ("B", "Queued"))
    assert schedule.take_listing(ListJobs(WS, [a, b]), both, everyone, 15.0).missing == []
    assert schedule.plan([b], 20.0, set()) == [ListJobs(WS, [b])]


def test_few_woken_jobs_before_the_next_listing_are_read_by_get_keeping_the_batch_due() -> None:
    schedule = tagged(concurrency=2)
    jobs = jobs_in(WS, "A", "B", "C")
    listing = snapshots(*((job.name, "Running") for job in jobs))
    schedule.take_listing(ListJobs(WS, jobs), listing, by_ref(jobs), 0.0)
    woken = {jobs[0].ref, jobs[1].ref}
    assert schedule.plan(jobs[:2], 5.0, woken) == [
        GetJob(jobs[0].ref, batch_due=15.0),
        GetJob(jobs[1].ref, batch_due=15.0),
    ]
    # More than max(concurrency, listed // 100) woken jobs: one listing is cheaper.
    assert schedule.plan(jobs, 5.0, set(woken) | {jobs[2].ref}) == [ListJobs(WS, jobs)]
    # Not all woken: the batch is listed.
    assert schedule.plan(jobs[:2], 5.0, {jobs[0].ref}) == [ListJobs(WS, jobs[:2])]
    # At the batch's own listing time: listed, woken or not.
    assert schedule.plan(jobs[:2], 15.0, woken) == [ListJobs(WS, jobs[:2])]


def test_the_woken_threshold_grows_with_the_listed_batch() -> None:
    schedule = tagged(concurrency=1)
    jobs = jobs_in(WS, *(f"J{i}" for i in range(300)))
    listing = snapshots(*((job.name, "Running") for job in jobs))
    schedule.take_listing(ListJobs(WS, jobs), listing, by_ref(jobs), 0.0)
    woken = {job.ref for job in jobs[:3]}
    # 300 listed: up to 300 // 100 = 3 woken jobs are read by GET, 4 are listed.
    assert all(isinstance(read, GetJob) for read in schedule.plan(jobs[:3], 1.0, woken))
    four = set(woken) | {jobs[3].ref}
    assert schedule.plan(jobs[:4], 1.0, four) == [ListJobs(WS, jobs[:4])]


def test_before_any_listing_woken_jobs_are_still_listed() -> None:
    schedule = tagged()
    jobs = jobs_in(WS, "A")
    assert schedule.next_listing(WS) == -math.inf
    assert schedule.plan(jobs, 0.0, {jobs[0].ref}) == [ListJobs(WS, jobs)]


def test_a_retried_attempt_is_matched_by_name_in_the_next_listing() -> None:
    schedule = tagged()
    first = jobs_in(WS, "A")
    schedule.take_listing(ListJobs(WS, first), snapshots(("A", "Failed")), by_ref(first), 0.0)
    retry = jobs_in(WS, "A_r2")
    everyone = by_ref(first, retry)
    listing = snapshots(("A", "Failed"), ("A_r2", "Queued"))
    seen = schedule.take_listing(ListJobs(WS, retry), listing, everyone, 15.0)
    assert [job.name for job, _ in seen.observed] == ["A", "A_r2"]
    assert seen.missing == []


@pytest.mark.parametrize(("changed", "expected"), [(True, 5.0), (False, 30.0)])
def test_a_new_policy_applies_from_the_next_listing(changed: bool, expected: float) -> None:
    schedule = tagged()
    jobs = jobs_in(WS, "A")
    schedule.take_listing(ListJobs(WS, jobs), snapshots(("A", "Running")), by_ref(jobs), 0.0)
    schedule.policy = PollPolicy(poll_interval=5.0, max_poll_interval=30.0, backoff=3.0)
    status = "Completed" if changed else "Running"
    seen = schedule.take_listing(ListJobs(WS, jobs), snapshots(("A", status)), by_ref(jobs), 15.0)
    # Unchanged: min(30, max(5, 15 * 3)) = 30; changed: the new poll interval.
    assert seen.batch_due - 15.0 == expected
