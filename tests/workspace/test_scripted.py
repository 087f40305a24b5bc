"""Scripted mode: statuses follow timelines on the clock; cancels and requests are recorded."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from amlwait.core.clock import VirtualClock
from amlwait.core.jobs import JobRef
from amlwait.workspace import ScriptedWorkspace
from tests.workspace.helpers import API_VERSION, WORKSPACE, get, job_path, put_job, status_of


def _cancel(client: httpx.Client, name: str) -> httpx.Response:
    return client.post(job_path(name) + "/cancel", params={"api-version": API_VERSION})


def test_status_follows_the_timeline_on_the_clock(
    scripted_workspace: ScriptedWorkspace,
    scripted_client: httpx.Client,
    virtual_clock: VirtualClock,
) -> None:
    timeline = [(0, "Queued"), (60, "Running"), (3600, "Completed")]
    scripted_workspace.add_job(WORKSPACE, "train_1", timeline)
    seen = []
    for step in (0, 59.9, 0.1, 3539.9, 0.1, 86400):
        virtual_clock.advance(step)
        seen.append(status_of(scripted_client, "train_1"))

    assert seen == ["Queued", "Queued", "Running", "Running", "Completed", "Completed"]


def test_a_job_can_404_first_and_appear_later(
    scripted_workspace: ScriptedWorkspace,
    scripted_client: httpx.Client,
    virtual_clock: VirtualClock,
) -> None:
    scripted_workspace.add_job(WORKSPACE, "late_job", [(0, None), (30, "NotStarted")])
    scripted_workspace.add_job(WORKSPACE, "later_job", [(45, "Queued")])

    before = [get(scripted_client, job_path(n)).status_code for n in ("late_job", "later_job")]
    virtual_clock.advance(30)
    middle = [get(scripted_client, job_path(n)).status_code for n in ("late_job", "later_job")]
    virtual_clock.advance(15)
    after = [get(scripted_client, job_path(n)).status_code for n in ("late_job", "later_job")]

    assert before == [404, 404]
    assert middle == [200, 404]
    assert after == [200, 200]
    listed = get(scripted_client, f"{WORKSPACE.arm_path}/jobs").json()["value"]
    assert [job["name"] for job in listed] == ["late_job", "later_job"]


def test_not_responding_recovers_by_timeline(
    scripted_workspace: ScriptedWorkspace,
    scripted_client: httpx.Client,
    virtual_clock: VirtualClock,
) -> None:
    scripted_workspace.add_job(
        WORKSPACE, "flaky", [(0, "Running"), (10, "NotResponding"), (20, "Running")]
    )
    seen = []
    for _ in range(3):
        seen.append(status_of(scripted_client, "flaky"))
        virtual_clock.advance(10)

    assert seen == ["Running", "NotResponding", "Running"]


def test_created_and_modified_times_come_from_the_timeline(
    scripted_workspace: ScriptedWorkspace,
    scripted_client: httpx.Client,
    virtual_clock: VirtualClock,
) -> None:
    scripted_workspace.add_job(WORKSPACE, "timed", [(0, None), (60, "Queued"), (120, "Running")])
    virtual_clock.advance(150)

    system = get(scripted_client, job_path("timed")).json()["systemData"]

    assert system["createdAt"] == "2026-01-01T00:01:00.000000Z"
    assert system["lastModifiedAt"] == "2026-01-01T00:02:00.000000Z"


def test_cancel_requests_then_cancels_after_the_delay(virtual_clock: VirtualClock) -> None:
    with ScriptedWorkspace(virtual_clock, cancel_delay=30, cancel_retry_after=5) as workspace:
        workspace.add_job(WORKSPACE, "long_job", [(0, "Running"), (10_000, "Completed")])
        with httpx.Client(
            base_url=workspace.endpoint, headers={"Authorization": "Bearer x"}
        ) as client:
            response = _cancel(client, "long_job")
            location = response.headers["location"]
            right_after = status_of(client, "long_job")
            operation_pending = client.get(location).status_code
            virtual_clock.advance(30)
            later = status_of(client, "long_job")
            operation_done = client.get(location).status_code
            virtual_clock.advance(20_000)
            much_later = status_of(client, "long_job")

    assert response.status_code == 202
    assert response.headers["retry-after"] == "5"
    assert location.startswith(workspace.endpoint)
    assert (right_after, operation_pending) == ("CancelRequested", 202)
    assert (later, operation_done) == ("Canceled", 200)
    assert much_later == "Canceled"
    assert [(c.job, c.effective) for c in workspace.cancellations] == [
        (JobRef(WORKSPACE, "long_job"), True)
    ]


def test_cancel_without_delay_is_immediate_and_terminal_jobs_stay(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    scripted_workspace.add_job(WORKSPACE, "running", [(0, "Running")])
    scripted_workspace.add_job(WORKSPACE, "finished", [(0, "Failed")])

    running = _cancel(scripted_client, "running")
    finished = _cancel(scripted_client, "finished")
    missing = _cancel(scripted_client, "absent")

    assert running.status_code == 202
    assert status_of(scripted_client, "running") == "Canceled"
    assert scripted_client.get(running.headers["location"]).status_code == 200
    assert finished.status_code == 200
    assert status_of(scripted_client, "finished") == "Failed"
    assert missing.status_code == 404
    assert [c.effective for c in scripted_workspace.cancellations] == [True, False]


def test_put_creates_a_not_started_job(scripted_client: httpx.Client) -> None:
    created = put_job(scripted_client, "submitted", tags={"k": "v"})
    updated = put_job(scripted_client, "submitted", tags={"k": "w"})

    assert created.status_code == 201
    assert updated.status_code == 200
    assert status_of(scripted_client, "submitted") == "NotStarted"
    assert updated.json()["properties"]["tags"] == {"k": "w"}


def test_requests_are_recorded_with_clock_time_and_answer(
    scripted_workspace: ScriptedWorkspace,
    scripted_client: httpx.Client,
    virtual_clock: VirtualClock,
) -> None:
    scripted_workspace.add_job(WORKSPACE, "job_a", [(0, "Running")])
    get(scripted_client, job_path("job_a"))
    virtual_clock.advance(5)
    get(scripted_client, job_path("job_b"), extra="1")

    first, second = scripted_workspace.requests

    assert (first.method, first.path, first.status, first.job) == (
        "GET",
        job_path("job_a"),
        200,
        "job_a",
    )
    assert first.query == {"api-version": API_VERSION}
    assert second.query["extra"] == "1"
    assert second.status == 404
    assert second.time - first.time == 5
    assert first.request_id != second.request_id


def test_a_listing_by_tag_renders_only_the_jobs_that_carry_it(
    scripted_workspace: ScriptedWorkspace,
    scripted_client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It rendered every job of the workspace per request: O(all jobs) per listing, too
    slow for a client's timeout with 10,000 jobs behind a service's load benchmark."""
    for number in range(300):
        tags = {"batch-a": "1"} if number % 100 == 7 else {"other": "1"}
        scripted_workspace.add_job(WORKSPACE, f"job_{number}", [(0, "Running")], tags=tags)
    backend = scripted_workspace.backend
    rendered: list[str] = []
    render = backend._render

    def counting(job: Any, *args: Any) -> Any:
        rendered.append(job.ref.name)
        return render(job, *args)

    monkeypatch.setattr(backend, "_render", counting)
    path = f"{WORKSPACE.arm_path}/jobs"
    answer = get(scripted_client, path, tag="batch-a", listViewType="All").json()
    assert [job["name"] for job in answer["value"]] == ["job_7", "job_107"]  # a page of 2
    assert sorted(rendered) == ["job_107", "job_207", "job_7"]
