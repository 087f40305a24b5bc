"""ARM read throttling: a 250-token bucket per subscription refilled at 25/s on the clock."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from amlwait.core.clock import VirtualClock
from amlwait.core.jobs import WorkspaceRef
from amlwait.workspace import ScriptedWorkspace
from tests.workspace.helpers import WORKSPACE, arm_client, get, job_path

REMAINING = "x-ms-ratelimit-remaining-subscription-reads"


@pytest.fixture
def throttled(virtual_clock: VirtualClock) -> Iterator[tuple[ScriptedWorkspace, httpx.Client]]:
    with ScriptedWorkspace(virtual_clock, throttle=True) as workspace:
        workspace.add_job(WORKSPACE, "job_a", [(0, "Running")])
        with arm_client(workspace.endpoint) as client:
            yield workspace, client


def test_reads_beyond_the_bucket_get_429_with_retry_after(
    throttled: tuple[ScriptedWorkspace, httpx.Client], virtual_clock: VirtualClock
) -> None:
    _, client = throttled
    answers = [get(client, job_path("job_a")) for _ in range(250)]

    refused = get(client, job_path("job_a"))

    assert all(a.status_code == 200 for a in answers)
    assert [a.headers[REMAINING] for a in answers[:2]] == ["249", "248"]
    assert answers[-1].headers[REMAINING] == "0"
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TooManyRequests"
    assert refused.headers["retry-after"] == "1"
    assert refused.headers[REMAINING] == "0"


def test_a_request_sent_before_retry_after_is_refused_again(
    throttled: tuple[ScriptedWorkspace, httpx.Client], virtual_clock: VirtualClock
) -> None:
    _, client = throttled
    for _ in range(251):
        get(client, job_path("job_a"))

    virtual_clock.advance(0.5)  # the bucket holds 12 tokens again, but Retry-After rules
    too_early = get(client, job_path("job_a"))
    virtual_clock.advance(0.5)
    on_time = get(client, job_path("job_a"))

    assert too_early.status_code == 429
    assert too_early.headers["retry-after"] == "1"
    assert on_time.status_code == 200


def test_buckets_are_per_subscription(
    throttled: tuple[ScriptedWorkspace, httpx.Client],
) -> None:
    workspace, client = throttled
    other = WorkspaceRef("sub-2", "rg", "ws")
    workspace.add_job(other, "job_o", [(0, "Running")])
    for _ in range(251):
        get(client, job_path("job_a"))

    assert get(client, job_path("job_o", other)).status_code == 200
