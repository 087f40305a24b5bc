"""Injected faults, as an httpx client sees them."""

from __future__ import annotations

import time

import httpx
import pytest

from amlwait.workspace import ScriptedWorkspace
from tests.workspace.helpers import WORKSPACE, get, job_path


@pytest.fixture(autouse=True)
def _jobs(scripted_workspace: ScriptedWorkspace) -> None:
    scripted_workspace.add_job(WORKSPACE, "job_a", [(0, "Running")])
    scripted_workspace.add_job(WORKSPACE, "job_b", [(0, "Running")])


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("429", 429, "TooManyRequests"),
        ("500", 500, "InternalServerError"),
        ("503", 503, "ServiceUnavailable"),
        ("401", 401, "AuthenticationFailed"),
    ],
)
def test_error_faults_answer_once_with_an_arm_error(
    scripted_workspace: ScriptedWorkspace,
    scripted_client: httpx.Client,
    kind: str,
    status: int,
    code: str,
) -> None:
    scripted_workspace.faults.add(kind, retry_after=7)  # type: ignore[arg-type]

    faulty = get(scripted_client, job_path("job_a"))
    healthy = get(scripted_client, job_path("job_a"))

    assert faulty.status_code == status
    assert faulty.json()["error"]["code"] == code
    assert "x-ms-request-id" in faulty.headers
    if kind in ("429", "503"):
        assert faulty.headers["retry-after"] == "7"
    if kind == "401":
        assert faulty.headers["www-authenticate"] == "Bearer"
    assert healthy.status_code == 200
    assert [r.fault for r in scripted_workspace.requests] == [kind, None]


def test_drop_breaks_the_connection_mid_answer(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    scripted_workspace.faults.add("drop")

    with pytest.raises(httpx.RemoteProtocolError):
        get(scripted_client, job_path("job_a"))
    assert get(scripted_client, job_path("job_a")).status_code == 200


def test_slow_answers_after_the_delay(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    scripted_workspace.faults.add("slow", delay=0.3)

    started = time.monotonic()
    response = get(scripted_client, job_path("job_a"))

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_faults_match_a_job_name_or_a_predicate_and_are_used_up(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    scripted_workspace.faults.add("500", match="job_b", times=2)
    scripted_workspace.faults.add("503", match=lambda r: "tag" in r.query)

    statuses = [
        get(scripted_client, job_path("job_a")).status_code,
        get(scripted_client, job_path("job_b")).status_code,
        get(scripted_client, job_path("job_b")).status_code,
        get(scripted_client, job_path("job_b")).status_code,
        get(scripted_client, f"{WORKSPACE.arm_path}/jobs", tag="x").status_code,
        get(scripted_client, f"{WORKSPACE.arm_path}/jobs", tag="x").status_code,
    ]

    assert statuses == [200, 500, 500, 200, 503, 200]
    assert scripted_workspace.faults.pending() == 0


def test_unknown_fault_kind_is_refused(scripted_workspace: ScriptedWorkspace) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        scripted_workspace.faults.add("418")  # type: ignore[arg-type]
