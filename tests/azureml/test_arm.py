"""The ARM client and the waiter against the scripted workspace: real HTTP on loopback,
virtual time (retries and Retry-After never sleep for real)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from amlwait.azureml.arm import ArmJobSource
from amlwait.azureml.credentials import StaticToken
from amlwait.core.budget import RequestBudget
from amlwait.core.clock import VirtualClock
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.policy import PollPolicy
from amlwait.core.retry import RetryPolicy
from amlwait.core.tracker import BatchOutcome
from amlwait.errors import AuthenticationError, InputError, ServiceError
from amlwait.result import WaitResult
from amlwait.waiter import WaitOptions, wait_for_jobs
from amlwait.workspace import ScriptedWorkspace

WS = WorkspaceRef("sub-1", "rg-1", "ws-1")
H = 3600.0


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def workspace(clock: VirtualClock) -> Iterator[ScriptedWorkspace]:
    with ScriptedWorkspace(clock, page_size=2, cancel_retry_after=0.05) as scripted:
        yield scripted


def source_for(workspace: ScriptedWorkspace, clock: VirtualClock, **kwargs: Any) -> ArmJobSource:
    kwargs.setdefault("retry", RetryPolicy(attempts=6, initial=1.0, maximum=30.0, jitter=0.5))
    kwargs.setdefault("credential", StaticToken("test-token"))
    return ArmJobSource(endpoint=workspace.endpoint, clock=clock, **kwargs)


def wait(
    workspace: ScriptedWorkspace,
    clock: VirtualClock,
    refs: list[JobRef],
    tag: str | None = None,
    options: WaitOptions | None = None,
    **kwargs: Any,
) -> WaitResult:
    async def main() -> WaitResult:
        async with source_for(workspace, clock, **kwargs) as source:
            return await wait_for_jobs(
                refs, source=source, clock=clock, tag=tag, options=options or WaitOptions()
            )

    return asyncio.run(main())


def arm_requests(workspace: ScriptedWorkspace) -> list[Any]:
    return [r for r in workspace.requests if "/jobs" in r.path]


def test_a_batch_listed_by_tag_follows_next_links_and_succeeds(workspace, clock) -> None:
    refs = [
        workspace.add_job(
            WS, f"J{i}", [(0, "Queued"), (60, "Running"), (H + i, "Completed")], {"batch-7": ""}
        )
        for i in range(5)
    ]
    workspace.add_job(WS, "OTHER", [(0, "Running")], {"other": ""})
    result = wait(workspace, clock, refs, tag="batch-7")
    assert result.outcome is BatchOutcome.SUCCEEDED
    lists = [r for r in arm_requests(workspace) if r.path.endswith("/jobs")]
    assert lists, "the batch was read by LIST"
    assert all(r.query.get("tag") == "batch-7" for r in lists if "$skipToken" not in r.query)
    assert any("$skipToken" in r.query for r in lists), "nextLink was followed"
    assert not any(
        r.job == "J0" and r.method == "GET" and not r.path.endswith("/jobs")
        for r in arm_requests(workspace)
    )


def test_a_job_that_appears_late_is_found_by_get(workspace, clock) -> None:
    ref = workspace.add_job(WS, "LATE", [(0, None), (100, "Running"), (500, "Completed")])
    result = wait(workspace, clock, [ref])
    assert result.outcome is BatchOutcome.SUCCEEDED
    statuses = [r.status for r in arm_requests(workspace)]
    assert statuses[0] == 404 and statuses[-1] == 200


@pytest.mark.parametrize("kind", ["500", "503", "drop"])
def test_transient_failures_are_retried(workspace, clock, kind: str) -> None:
    ref = workspace.add_job(WS, "J", [(0, "Running"), (600, "Completed")])
    workspace.faults.add(kind, times=3)
    result = wait(workspace, clock, [ref])
    assert result.outcome is BatchOutcome.SUCCEEDED
    faulted = [r for r in arm_requests(workspace) if r.fault == kind]
    assert len(faulted) == 3


def test_a_slow_answer_times_out_and_is_retried(workspace, clock) -> None:
    ref = workspace.add_job(WS, "J", [(0, "Completed")])
    workspace.faults.add("slow", times=1, delay=1.0)
    result = wait(workspace, clock, [ref], request_timeout=0.3)
    assert result.outcome is BatchOutcome.SUCCEEDED
    assert len(arm_requests(workspace)) == 2  # the job's GET, timed out, then retried
    # Every request is counted, the reads of its run time (workspace, discovery,
    # experiment, one search) included.
    assert result.requests == len(workspace.requests) == 2 + 4


def test_429_retry_after_is_obeyed_before_the_next_request(workspace, clock) -> None:
    ref = workspace.add_job(WS, "J", [(0, "Running"), (300, "Completed")])
    workspace.faults.add("429", times=1, retry_after=40)
    result = wait(workspace, clock, [ref])
    assert result.outcome is BatchOutcome.SUCCEEDED
    log = arm_requests(workspace)
    assert log[0].status == 429
    assert log[1].time - log[0].time >= 40


def test_arm_throttling_never_fails_the_wait(workspace, clock) -> None:
    with ScriptedWorkspace(clock, throttle=True) as throttled:
        refs = [
            throttled.add_job(WS, f"J{i:03d}", [(0, "Running"), (20, "Completed")])
            for i in range(270)
        ]
        # A budget far above ARM's, to make ARM throttle us.
        budget = RequestBudget(rate=1000, burst=1000)
        result = wait(throttled, clock, refs, budget=budget)
        assert result.outcome is BatchOutcome.SUCCEEDED
        assert any(r.status == 429 for r in throttled.requests)


def test_low_remaining_reads_slow_the_client_down(workspace, clock) -> None:
    with ScriptedWorkspace(clock, throttle=True) as throttled:
        refs = [throttled.add_job(WS, f"J{i:03d}", [(0, "Running")]) for i in range(200)]
        budget = RequestBudget(rate=1000, burst=1000)

        async def main() -> float:
            async with source_for(throttled, clock, budget=budget) as source:
                await asyncio.gather(*(source.get_job(ref) for ref in refs))
                return source.throttle.budget.current_rate

        assert asyncio.run(main()) < 1000


def test_401_fetches_a_fresh_token_once(clock) -> None:
    class Rotating:
        def __init__(self) -> None:
            self.tokens = ["stale", "fresh"]
            self.invalidated = 0

        async def token(self) -> str:
            return self.tokens[0]

        def invalidate(self) -> bool:
            self.invalidated += 1
            self.tokens.pop(0)
            return True

    with ScriptedWorkspace(clock, token="fresh") as secured:
        ref = secured.add_job(WS, "J", [(0, "Completed")])
        credential = Rotating()
        result = wait(secured, clock, [ref], credential=credential)
        assert result.outcome is BatchOutcome.SUCCEEDED
        assert credential.invalidated == 1
        assert [r.status for r in arm_requests(secured)] == [401, 200]
        # The run-time reads that follow use the fresh token: no second refresh.
        assert [r.status for r in secured.requests[2:]] == [200] * 4


def test_a_refused_token_ends_with_a_clear_error_that_hides_the_token(clock) -> None:
    with ScriptedWorkspace(clock, token="right") as secured:
        ref = secured.add_job(WS, "J", [(0, "Completed")])
        with pytest.raises(AuthenticationError) as caught:
            wait(secured, clock, [ref], credential=StaticToken("wrong-secret-value"))
        assert "401" in str(caught.value)
        assert "wrong-secret-value" not in str(caught.value)


def test_a_persistent_failure_is_one_clear_service_error(workspace, clock) -> None:
    # Without a deadline (submit, cancel): after retry.attempts tries. A wait retries until
    # its deadline instead (tests/azureml/test_arm_faults.py).
    ref = workspace.add_job(WS, "J", [(0, "Running")])
    workspace.faults.add("503", times=100)

    async def main() -> None:
        async with source_for(workspace, clock) as source:
            await source.get_job(ref)

    with pytest.raises(ServiceError, match=r"GET J kept failing: 503 .* \(6 attempts\)"):
        asyncio.run(main())
    assert len(arm_requests(workspace)) == 6


def test_retries_stop_at_the_deadline(workspace, clock) -> None:
    ref = workspace.add_job(WS, "J", [(0, "Running")])
    result = wait(workspace, clock, [ref], options=WaitOptions(timeout=600))
    assert result.outcome is BatchOutcome.TIMED_OUT
    workspace.faults.add("503", times=1000)
    start = clock.now()
    result = wait(
        workspace,
        clock,
        [ref],
        options=WaitOptions(timeout=30),
        retry=RetryPolicy(attempts=50, initial=5, maximum=60),
    )
    assert result.outcome is BatchOutcome.TIMED_OUT
    assert clock.now() - start <= 30 + 1e-6


def test_cancel_answers_202_and_the_job_ends_canceled(workspace, clock) -> None:
    ref = workspace.add_job(WS, "J", [(0, "Running")])

    async def main() -> str | None:
        async with source_for(workspace, clock) as source:
            await source.cancel_job(ref)
            snapshot = await source.get_job(ref)
            return snapshot.status if snapshot else None

    assert asyncio.run(main()) in ("CancelRequested", "Canceled")
    cancel = [r for r in workspace.requests if r.path.endswith("/cancel")]
    assert cancel[0].status == 202


def test_fail_fast_with_cancel_remaining_over_arm(workspace, clock) -> None:
    bad = workspace.add_job(WS, "BAD", [(0, "Running"), (120, "Failed")])
    slow = workspace.add_job(WS, "SLOW", [(0, "Running"), (10 * H, "Completed")])
    options = WaitOptions(
        fail_fast=True, cancel_remaining=True, policy=PollPolicy(poll_interval=15)
    )
    result = wait(workspace, clock, [bad, slow], options=options)
    assert result.outcome is BatchOutcome.FAILED
    assert [c.job for c in workspace.cancellations] == [slow]


def test_plain_http_is_refused_for_anything_but_loopback() -> None:
    with pytest.raises(InputError, match="plain http"):
        ArmJobSource(endpoint="http://management.example.com", credential=StaticToken("t"))
    with pytest.raises(InputError, match="not an http"):
        ArmJobSource(endpoint="ftp://x", credential=StaticToken("t"))


def test_a_next_link_to_another_host_is_not_followed(clock) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            200, json={"value": [], "nextLink": "https://evil.example.net/steal?$skipToken=1"}
        )

    async def main() -> None:
        async with ArmJobSource(
            credential=StaticToken("t"), clock=clock, transport=httpx.MockTransport(handler)
        ) as source:
            await source.list_jobs_by_tag(WS, "tag")

    with pytest.raises(ServiceError, match="another host"):
        asyncio.run(main())
    assert len(seen) == 1
