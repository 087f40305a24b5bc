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


# -- misbehaviour (issue 10): what each new kind puts on the wire ---------------------------


@pytest.mark.parametrize(
    ("kind", "content_type", "start"),
    [
        ("malformed-json", "application/json", b'{"value": [{'),
        ("html", "text/html", b"<!DOCTYPE html>"),
        ("json-list", "application/json", b"[{"),
        ("properties-string", "application/json", b'{"name": "job_a", "properties": "Running"}'),
    ],
)
def test_bad_bodies_answer_200_with_that_body(
    scripted_workspace: ScriptedWorkspace,
    scripted_client: httpx.Client,
    kind: str,
    content_type: str,
    start: bytes,
) -> None:
    scripted_workspace.faults.add(kind)  # type: ignore[arg-type]
    response = get(scripted_client, job_path("job_a"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert response.content.startswith(start)


@pytest.mark.parametrize(("kind", "jobs"), [("self-next-link", 2), ("one-job-loop", 1)])
def test_looping_pages_link_back_to_themselves(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client, kind: str, jobs: int
) -> None:
    scripted_workspace.faults.add(kind)  # type: ignore[arg-type]
    response = get(scripted_client, f"{WORKSPACE.arm_path}/jobs", listViewType="All")
    page = response.json()
    assert len(page["value"]) == jobs
    assert page["nextLink"] == str(response.request.url)


def test_drip_sends_headers_at_once_then_a_byte_per_delay(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    scripted_workspace.faults.add("drip", delay=0.2)
    started = time.monotonic()
    with scripted_client.stream(
        "GET", job_path("job_a"), params={"api-version": "2025-12-01"}
    ) as response:
        assert response.status_code == 200
        assert time.monotonic() - started < 0.2
        first = next(response.iter_raw(1))
    assert first == b"{"
    assert time.monotonic() - started >= 0.2


def test_hang_never_answers(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    scripted_workspace.faults.add("hang")
    with pytest.raises(httpx.ReadTimeout):
        scripted_client.get(job_path("job_a"), params={"api-version": "2025-12-01"}, timeout=0.5)


@pytest.mark.parametrize("value", [100000.0, float("inf")])
def test_retry_after_is_sent_as_given(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client, value: float
) -> None:
    scripted_workspace.faults.add("retry-after", retry_after=value)
    response = get(scripted_client, job_path("job_a"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == ("inf" if value == float("inf") else "100000")


def test_echo_authorization_repeats_the_header_in_its_error(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    scripted_workspace.faults.add("echo-authorization")
    response = get(scripted_client, job_path("job_a"))
    assert response.status_code == 400
    assert "Bearer any-token" in response.json()["error"]["message"]
