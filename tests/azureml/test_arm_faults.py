"""The ARM client against a misbehaving ARM (issue 10): every fault ends in a result.

Real HTTP on loopback to the scripted workspace with injected faults
(:mod:`amlwait.workspace.faults`); virtual time unless a test is about requests that hang
in real time, which use short real timeouts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import amlwait.azureml.arm as arm
from amlwait.azureml.arm import ArmJobSource
from amlwait.azureml.credentials import StaticToken
from amlwait.core.clock import SystemClock, VirtualClock
from amlwait.core.jobs import JobRef
from amlwait.core.policy import PollPolicy
from amlwait.core.retry import MAX_RETRY_AFTER, RetryPolicy
from amlwait.core.tracker import BatchOutcome, JobMissing
from amlwait.errors import ListingError, ServiceError
from amlwait.events import CancelSent, ListingFailed
from amlwait.result import WaitResult
from amlwait.throttle import read_deadline
from amlwait.waiter import WaitOptions, wait_for_jobs
from amlwait.workspace import ScriptedWorkspace
from tests.helpers import WS

H = 3600.0
TOKEN = "s3cr3t-bearer-token-value"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def workspace(clock: VirtualClock) -> Iterator[ScriptedWorkspace]:
    with ScriptedWorkspace(clock, page_size=2, cancel_retry_after=0.05) as scripted:
        yield scripted


def source_for(workspace: ScriptedWorkspace, clock: Any, **kwargs: Any) -> ArmJobSource:
    kwargs.setdefault("retry", RetryPolicy(attempts=6, initial=1.0, maximum=30.0, jitter=0.5))
    kwargs.setdefault("credential", StaticToken(TOKEN))
    return ArmJobSource(endpoint=workspace.endpoint, clock=clock, **kwargs)


def wait(
    workspace: ScriptedWorkspace,
    clock: Any,
    refs: list[JobRef],
    *,
    tag: str | None = None,
    options: WaitOptions | None = None,
    events: list[Any] | None = None,
    **kwargs: Any,
) -> WaitResult:
    listener = events.append if events is not None else None

    async def main() -> WaitResult:
        async with source_for(workspace, clock, **kwargs) as source:
            return await wait_for_jobs(
                refs,
                source=source,
                clock=clock,
                tag=tag,
                options=options or WaitOptions(),
                listener=listener,
            )

    return asyncio.run(main())


def is_listing(record: Any) -> bool:
    return bool(record.path.endswith("/jobs"))


def tagged_jobs(workspace: ScriptedWorkspace, count: int) -> list[JobRef]:
    return [
        workspace.add_job(WS, f"J{i}", [(0, "Running"), (600 + i, "Completed")], {"batch-1": ""})
        for i in range(count)
    ]


# -- item 2: listings that never end -----------------------------------------------------------


def test_a_next_link_to_its_own_page_is_a_listing_error_never_fetched_twice(
    workspace, clock
) -> None:
    tagged_jobs(workspace, 3)
    workspace.faults.add("self-next-link", match=is_listing, times=10**6)

    async def main() -> None:
        async with source_for(workspace, clock) as source:
            await source.list_jobs_by_tag(WS, "batch-1")

    with pytest.raises(ListingError, match="already sent"):
        asyncio.run(main())
    assert len(workspace.requests) == 1


def test_a_one_job_looping_listing_never_reports_a_running_job_missing(workspace, clock) -> None:
    refs = tagged_jobs(workspace, 3)
    workspace.faults.add("one-job-loop", match=is_listing, times=10**6)
    events: list[Any] = []
    options = WaitOptions(timeout=2 * H, policy=PollPolicy(poll_interval=60, not_found_grace=120))
    result = wait(workspace, clock, refs, tag="batch-1", options=options, events=events)
    assert result.outcome is BatchOutcome.SUCCEEDED
    assert not [e for e in events if isinstance(e, JobMissing)]
    failed = [e for e in events if isinstance(e, ListingFailed)]
    assert len(failed) == 1, "said once per episode, not per listing"
    gets = [r for r in workspace.requests if r.job == "J2" and not is_listing(r)]
    assert gets, "the listing's jobs were read one by one"


def test_a_listing_past_the_page_cap_is_refused(workspace, clock, monkeypatch) -> None:
    tagged_jobs(workspace, 9)  # five pages of two
    monkeypatch.setattr(arm, "MAX_LISTING_PAGES", 3)

    async def main() -> None:
        async with source_for(workspace, clock) as source:
            await source.list_jobs_by_tag(WS, "batch-1")

    with pytest.raises(ListingError, match="passed 3 pages"):
        asyncio.run(main())
    assert len(workspace.requests) == 3


def test_the_deadline_is_checked_before_every_page(workspace, clock) -> None:
    tagged_jobs(workspace, 9)
    # Each page after the first is a minute late: the deadline passes mid-listing.
    workspace.faults.add("429", match=lambda r: "$skipToken" in r.query, retry_after=60, times=99)

    async def main() -> None:
        read_deadline.set(clock.now() + 90)
        async with source_for(workspace, clock) as source:
            await source.list_jobs_by_tag(WS, "batch-1")

    from amlwait.throttle import DeadlineReached

    start = clock.now()
    with pytest.raises(DeadlineReached):
        asyncio.run(main())
    assert clock.now() - start <= 90


# -- item 4: answers that are not ARM's JSON, long throttling ----------------------------------


@pytest.mark.parametrize("kind", ["malformed-json", "html", "json-list", "properties-string"])
@pytest.mark.parametrize("tag", [None, "batch-1"], ids=["get", "list"])
def test_an_answer_that_is_not_arms_json_is_retried(workspace, clock, kind, tag) -> None:
    refs = tagged_jobs(workspace, 2)
    # Only the jobs' reads (GET or LIST), not the run-history reads made once they end.
    workspace.faults.add(kind, times=2, match=lambda record: "/jobs" in record.path)
    lines: list[str] = []
    # One read at a time: with two in flight, one may recover between the other's two
    # failures, and that is rightly a second episode (a second "retrying" line).
    options = WaitOptions(concurrency=1)
    result = wait(workspace, clock, refs, tag=tag, options=options, on_trouble=lines.append)
    assert result.outcome is BatchOutcome.SUCCEEDED
    assert [r.fault for r in workspace.requests].count(kind) == 2
    assert len([line for line in lines if line.startswith("retrying")]) == 1, lines
    assert "not ARM's JSON" in lines[0] and "until the deadline" in lines[0]


def test_two_hours_of_429_do_not_end_a_long_wait(workspace, clock) -> None:
    ref = workspace.add_job(WS, "J", [(0, "Running"), (3 * H, "Completed")])
    workspace.faults.add("429", retry_after=30, times=240)
    lines: list[str] = []
    options = WaitOptions(timeout=48 * H)
    result = wait(workspace, clock, [ref], options=options, on_trouble=lines.append)
    assert result.outcome is BatchOutcome.SUCCEEDED
    assert [r.status for r in workspace.requests].count(429) == 240
    retrying = [line for line in lines if line.startswith("retrying")]
    assert len(retrying) == 1 and "429" in retrying[0]
    assert any("answers again" in line and "240 failed" in line for line in lines)


def test_a_persistent_bad_answer_ends_at_the_deadline_with_a_result(workspace, clock) -> None:
    ref = workspace.add_job(WS, "J", [(0, "Running")])
    workspace.faults.add("malformed-json", times=10**6)
    start = clock.now()
    result = wait(workspace, clock, [ref], options=WaitOptions(timeout=H))
    assert result.outcome is BatchOutcome.TIMED_OUT
    assert clock.now() - start <= H + 1e-6


# -- item 13: Retry-After -------------------------------------------------------------------


@pytest.mark.parametrize("value", [100000.0, float("inf")])
def test_a_huge_or_infinite_retry_after_is_capped(workspace, clock, value) -> None:
    ref = workspace.add_job(WS, "J", [(0, "Completed")])
    workspace.faults.add("retry-after", retry_after=value)
    lines: list[str] = []
    result = wait(workspace, clock, [ref], on_trouble=lines.append)
    assert result.outcome is BatchOutcome.SUCCEEDED
    first, second = workspace.requests[:2]
    assert first.status == 429
    assert MAX_RETRY_AFTER <= second.time - first.time <= MAX_RETRY_AFTER + 2
    assert f"capped at {MAX_RETRY_AFTER:.0f} s" in lines[0]


# -- item 6: a server that echoes the Authorization header ---------------------------------------


def test_an_echoed_authorization_header_never_reaches_the_error(workspace, clock) -> None:
    ref = workspace.add_job(WS, "J", [(0, "Running")])
    workspace.faults.add("echo-authorization")
    with pytest.raises(ServiceError) as caught:
        wait(workspace, clock, [ref])
    assert "400" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert "***" in str(caught.value)


# -- item 3: requests in flight, the cancel phase (real time, short) --------------------------


def test_a_dripping_answer_is_cut_at_the_request_timeout(realtime_workspace) -> None:
    ref = realtime_workspace.add_job(WS, "J", [(0, "Running")])
    realtime_workspace.faults.add("drip", delay=0.2, times=10)

    async def main() -> None:
        retry = RetryPolicy(attempts=2, initial=0.05, jitter=0)
        async with source_for(
            realtime_workspace, SystemClock(), request_timeout=1.0, retry=retry
        ) as source:
            await source.get_job(ref)

    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"no complete answer within 1 s \(2 attempts\)"):
        asyncio.run(main())
    assert time.monotonic() - started < 4  # a whole drip takes 4109 bytes x 0.2 s


def test_a_hanging_server_cannot_keep_a_wait_past_its_deadline(realtime_workspace) -> None:
    ref = realtime_workspace.add_job(WS, "J", [(0, "Running")])
    realtime_workspace.faults.add("hang", times=10**6)
    started = time.monotonic()
    result = wait(realtime_workspace, SystemClock(), [ref], options=WaitOptions(timeout=1.5))
    assert result.outcome is BatchOutcome.TIMED_OUT
    assert time.monotonic() - started < 4  # the request timeout alone is 30 s


def test_the_cancel_phase_is_bounded_against_a_hanging_server(realtime_workspace) -> None:
    ref = realtime_workspace.add_job(WS, "J", [(0, "Running")])
    realtime_workspace.faults.add("hang", match=lambda r: r.path.endswith("/cancel"), times=99)
    events: list[Any] = []
    options = WaitOptions(
        timeout=0.5,
        cancel_remaining=True,
        cancel_phase=1.0,
        policy=PollPolicy(poll_interval=0.1, max_poll_interval=0.2),
    )
    started = time.monotonic()
    result = wait(realtime_workspace, SystemClock(), [ref], options=options, events=events)
    took = time.monotonic() - started
    assert result.outcome is BatchOutcome.TIMED_OUT
    assert took < 3.5, took  # deadline 0.5 s + cancel phase 1 s (+ start-up)
    cancels = [e for e in events if isinstance(e, CancelSent)]
    assert len(cancels) == 1 and "cancel phase ended" in (cancels[0].error or "")
