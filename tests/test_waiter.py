"""The waiting engine against the public fake, on a virtual clock (no real sleeping)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from amlwait.core.clock import VirtualClock
from amlwait.core.jobs import WorkspaceRef
from amlwait.core.policy import PollPolicy
from amlwait.core.tracker import BatchOutcome, JobFinished, StatusChanged, Warning_
from amlwait.events import Tick
from amlwait.result import WaitResult
from amlwait.testing import FakeJobSource
from amlwait.waiter import WaitOptions, wait_for_jobs

H = 3600.0


def run(source: FakeJobSource, clock: VirtualClock, **kwargs: Any) -> tuple[WaitResult, list[Any]]:
    events: list[Any] = []
    options = kwargs.pop("options", WaitOptions())
    result = asyncio.run(
        wait_for_jobs(
            source.refs(),
            source=source,
            clock=clock,
            options=options,
            listener=events.append,
            **kwargs,
        )
    )
    return result, events


def by_name(result: WaitResult) -> dict[str, Any]:
    return {job.name: job for job in result.jobs}


def test_a_48_hour_wait_runs_in_no_real_time_and_succeeds() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    for i in range(20):
        source.add_job(f"J{i}", [(0, "Queued"), (600, "Running"), (40 * H + i * 60, "Completed")])
    result, _ = run(source, clock)
    assert result.outcome is BatchOutcome.SUCCEEDED
    assert all(job.status == "Completed" for job in result.jobs)
    # Detected within the slowest poll interval of finishing.
    assert result.ended_at - result.started_at <= 40 * H + 19 * 60 + 120


def test_one_failed_job_fails_the_batch_but_the_others_are_still_followed() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("GOOD", [(0, "Running"), (3 * H, "Completed")])
    source.add_job("BAD", [(0, "Running"), (H, "Failed")])
    result, _ = run(source, clock)
    jobs = by_name(result)
    assert result.outcome is BatchOutcome.FAILED
    assert jobs["BAD"].outcome.value == "failed"
    assert jobs["GOOD"].outcome.value == "succeeded"


def test_canceled_counts_as_failure() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("X", [(0, "Running"), (60, "CancelRequested"), (90, "Canceled")])
    result, _ = run(source, clock)
    assert result.outcome is BatchOutcome.FAILED
    assert by_name(result)["X"].outcome.value == "canceled"


def test_fail_fast_with_cancel_remaining_stops_and_cancels_the_rest() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("BAD", [(0, "Running"), (600, "Failed")])
    source.add_job("SLOW1", [(0, "Running"), (10 * H, "Completed")])
    source.add_job("SLOW2", [(0, "Queued"), (10 * H, "Completed")])
    source.add_job("DONE", [(0, "Completed")])
    options = WaitOptions(fail_fast=True, cancel_remaining=True)
    result, _ = run(source, clock, options=options)
    assert result.outcome is BatchOutcome.FAILED
    assert result.ended_at - result.started_at < 900
    assert sorted(source.canceled) == ["SLOW1", "SLOW2"]
    assert list(result.canceled) == ["SLOW1", "SLOW2"]


def test_fail_fast_without_cancel_remaining_leaves_jobs_alone() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("BAD", [(0, "Failed")])
    source.add_job("SLOW", [(0, "Running"), (10 * H, "Completed")])
    result, _ = run(source, clock, options=WaitOptions(fail_fast=True))
    assert result.outcome is BatchOutcome.FAILED
    assert source.canceled == []
    assert by_name(result)["SLOW"].outcome.value == "unfinished"


def test_deadline_times_out_without_sleeping_past_it() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("SLOW", [(0, "Running"), (10 * H, "Completed")])
    result, _ = run(source, clock, options=WaitOptions(timeout=2 * H))
    assert result.outcome is BatchOutcome.TIMED_OUT
    assert result.ended_at == result.deadline
    assert source.canceled == []


def test_deadline_with_cancel_remaining_cancels_what_is_still_running() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("SLOW", [(0, "Running"), (10 * H, "Completed")])
    source.add_job("QUICK", [(0, "Running"), (60, "Completed")])
    result, _ = run(source, clock, options=WaitOptions(timeout=H, cancel_remaining=True))
    assert result.outcome is BatchOutcome.TIMED_OUT
    assert source.canceled == ["SLOW"]


def test_timeout_zero_reads_every_job_once_and_reports_the_unfinished() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("DONE", [(0, "Completed")])
    source.add_job("GOING", [(0, "Running")])
    result, _ = run(source, clock, options=WaitOptions(timeout=0))
    assert result.outcome is BatchOutcome.TIMED_OUT
    assert source.requests_sent == 2
    assert clock.slept == 0
    assert by_name(result)["DONE"].outcome.value == "succeeded"


def test_timeout_zero_with_all_done_succeeds() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("DONE", [(0, "Completed")])
    result, _ = run(source, clock, options=WaitOptions(timeout=0))
    assert result.outcome is BatchOutcome.SUCCEEDED


def test_a_job_that_appears_within_the_grace_is_followed() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("LATE", [(0, None), (120, "Queued"), (600, "Completed")])
    result, _events = run(source, clock)
    assert result.outcome is BatchOutcome.SUCCEEDED
    assert by_name(result)["LATE"].first_seen - result.started_at >= 120


def test_a_job_missing_past_the_grace_fails_as_not_found() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("GHOST", [(0, None)])
    options = WaitOptions(policy=PollPolicy(not_found_grace=300))
    result, _ = run(source, clock, options=options)
    ghost = by_name(result)["GHOST"]
    assert result.outcome is BatchOutcome.FAILED
    assert ghost.outcome.value == "not_found"
    # Failed at the grace (give or take the wake coalescing), not a poll interval later.
    assert 300 <= ghost.finished_at - result.started_at <= 301


def test_not_responding_that_recovers_is_only_a_warning() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job(
        "FLAKY", [(0, "Running"), (600, "NotResponding"), (900, "Running"), (3600, "Completed")]
    )
    result, events = run(source, clock)
    assert result.outcome is BatchOutcome.SUCCEEDED
    warnings = [e for e in events if isinstance(e, Warning_)]
    assert [w.kind for w in warnings] == ["suspect"]


def test_not_responding_past_its_grace_fails() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("DEAD", [(0, "Running"), (600, "NotResponding")])
    options = WaitOptions(policy=PollPolicy(suspect_grace=900))
    result, _ = run(source, clock, options=options)
    dead = by_name(result)["DEAD"]
    assert result.outcome is BatchOutcome.FAILED
    assert dead.status == "NotResponding"
    assert "NotResponding for 15m" in (dead.reason or "")


def test_unknown_keeps_waiting_with_a_warning() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("ODD", [(0, "Unknown"), (2 * H, "Completed")])
    result, events = run(source, clock)
    assert result.outcome is BatchOutcome.SUCCEEDED
    assert any(isinstance(e, Warning_) and e.kind == "unknown" for e in events)


def test_a_stalled_state_warns_once() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("STUCK", [(0, "Preparing"), (3 * H, "Running"), (4 * H, "Completed")])
    _result, events = run(source, clock)
    stalls = [e for e in events if isinstance(e, Warning_) and e.kind == "stall"]
    assert len(stalls) == 1
    assert "STUCK has been Preparing for 1h" in stalls[0].message


def test_state_changes_are_reported_with_the_time_in_the_previous_state() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("J", [(0, "Queued"), (60, "Running"), (900, "Completed")])
    _, events = run(source, clock, options=WaitOptions(policy=PollPolicy(poll_interval=15)))
    changes = [(e.old, e.new) for e in events if isinstance(e, StatusChanged)]
    assert changes == [(None, "Queued"), ("Queued", "Running"), ("Running", "Completed")]
    assert any(isinstance(e, JobFinished) for e in events)
    assert any(isinstance(e, Tick) for e in events)


def test_jobs_across_workspaces_are_all_followed() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    other = WorkspaceRef("sub2", "rg2", "ws2")
    source.add_job("A", [(0, "Running"), (600, "Completed")])
    source.add_job("A", [(0, "Running"), (900, "Failed")], workspace=other)
    result, _ = run(source, clock)
    assert result.outcome is BatchOutcome.FAILED
    outcomes = {(str(j.ref.workspace), j.name): j.outcome.value for j in result.jobs}
    assert outcomes == {
        ("00000000-0000-0000-0000-000000000000/rg/ws", "A"): "succeeded",
        ("sub2/rg2/ws2", "A"): "failed",
    }


def test_listing_by_tag_reads_a_big_batch_with_few_requests() -> None:
    def scenario(tag: str | None) -> tuple[WaitResult, FakeJobSource]:
        clock = VirtualClock()
        source = FakeJobSource(clock, page_size=100)
        for i in range(500):
            source.add_job(
                f"J{i:04d}",
                [(0, "Queued"), (300 + i, "Running"), (2 * H + 7 * i, "Completed")],
                tags={"batch": "1"},
            )
        result, _ = run(source, clock, tag=tag)
        return result, source

    listed, listed_source = scenario("batch")
    fetched, _ = scenario(None)
    assert listed.outcome is fetched.outcome is BatchOutcome.SUCCEEDED
    assert {r.kind for r in listed_source.requests} == {"list", "list-next", "listed"}
    assert listed.requests * 10 < fetched.requests


def test_a_listed_batch_backs_off_as_a_whole_and_speeds_up_when_any_job_changes() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock, page_size=2)
    # Nothing changes for the first hour; then one job moves at 1 h and finishes at 2 h.
    source.add_job("A", [(0, "Running"), (H, "Finalizing"), (2 * H, "Completed")], tags={"b": ""})
    source.add_job("B", [(0, "Running"), (2 * H + 1, "Completed")], tags={"b": ""})
    source.add_job("C", [(0, "Running"), (2 * H + 2, "Completed")], tags={"b": ""})
    result, _ = run(source, clock, tag="b")
    assert result.outcome is BatchOutcome.SUCCEEDED
    listings = [r.at - source.started_at for r in source.requests if r.kind == "list"]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(listings)]
    # 15 s, then x1.5 per quiet listing, capped at 2 min (each plus the 0.3 s of slack
    # that lets jobs due together be read together).
    expected = [15.0, 22.5, 33.75, 50.625, 75.9375, 113.90625, 120.0, 120.0]
    assert gaps[:8] == [round(gap + 0.3, 3) for gap in expected]
    # Every listing reads the whole batch in 2 pages: no job is read on its own.
    assert not any(r.kind == "get" for r in source.requests)
    # The listing that saw A become Finalizing is followed by one 15 s later.
    moved = next(i for i, at in enumerate(listings) if at >= H)
    assert gaps[moved] == 15.3
    assert all(gap <= 120.3 for gap in gaps)
    # A quiet batch costs about one listing (2 pages) per 2 min, not one per 15 s.
    assert len(listings) < 2 * H / 120 + 20


def test_listing_falls_back_to_get_for_a_job_without_the_tag() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("TAGGED", [(0, "Running"), (600, "Completed")], tags={"b": ""})
    source.add_job("UNTAGGED", [(0, "Running"), (900, "Completed")])
    result, _ = run(source, clock, tag="b")
    assert result.outcome is BatchOutcome.SUCCEEDED
    assert any(r.kind == "get" and r.job == "UNTAGGED" for r in source.requests)
    assert not any(r.kind == "get" and r.job == "TAGGED" for r in source.requests)


def test_the_json_result_has_the_documented_fields() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("J", [(0, "Running"), (60, "Completed")])
    result, _ = run(source, clock)
    document = result.to_json()
    assert document["outcome"] == "succeeded"
    assert document["requests"] == source.requests_sent
    job = document["jobs"][0]
    assert {
        "name",
        "workspace",
        "status",
        "outcome",
        "studio_url",
        "first_seen",
        "finished_at",
    } <= set(job)
    assert job["studio_url"].startswith("https://ml.azure.com/runs/J?wsid=/subscriptions/")
    assert job["first_seen"].endswith("Z")


def test_stop_interrupts_and_cancels_nothing_by_default() -> None:
    from amlwait.waiter import Waiter

    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("J", [(0, "Running")])

    async def main() -> WaitResult:
        waiter = Waiter(source.refs(), source, clock=clock)

        def listener(event: Any) -> None:
            if isinstance(event, Tick) and event.at - waiter.started_at > 600:
                waiter.stop()

        waiter.listener = listener
        return await waiter.run()

    result = asyncio.run(main())
    assert result.outcome is BatchOutcome.INTERRUPTED
    assert source.canceled == []


def test_stop_with_cancel_on_interrupt_cancels_the_unfinished() -> None:
    from amlwait.waiter import Waiter

    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("J", [(0, "Running")])
    source.add_job("K", [(0, "Completed")])

    async def main() -> WaitResult:
        waiter = Waiter(
            source.refs(), source, clock=clock, options=WaitOptions(cancel_on_interrupt=True)
        )
        waiter.listener = lambda event: waiter.stop() if isinstance(event, Tick) else None
        return await waiter.run()

    result = asyncio.run(main())
    assert result.outcome is BatchOutcome.INTERRUPTED
    assert source.canceled == ["J"]
