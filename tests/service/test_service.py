"""The waiting service end to end: ``python -m amlwait.service`` as a real process, a
scripted Azure ML workspace on the real clock, and a fake Azure DevOps plan API."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amlwait.service.testing import AUTH_TOKEN as TOKEN
from amlwait.service.testing import EVENTGRID_KEY, FakeDevOps, callback_headers
from amlwait.service.testing import SERVICE_KEY as KEY
from amlwait.service.testing import TEST_WORKSPACE as WS
from amlwait.service.testing import ServiceProcess as Service
from amlwait.service.testing import wait_body as body
from amlwait.workspace import ScriptedWorkspace


def job_statuses(service: Service, wait_id: str) -> dict[str, str | None]:
    jobs = service.get(f"/v1/waits/{wait_id}").json()["jobs"]
    return {job["name"]: job.get("status") for job in jobs}


def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def completions_for(devops: FakeDevOps, plan: str) -> list[Any]:
    return [c for c in devops.accepted_completions() if f"/plans/{plan}/" in c.path]


def feed_text(devops: FakeDevOps, plan: str) -> str:
    lines: list[str] = []
    for call in devops.snapshot():
        if f"/plans/{plan}/" in call.path and call.path.endswith("/feed"):
            lines.extend(call.json["value"])
    return "\n".join(lines)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def devops() -> Iterator[FakeDevOps]:
    fake = FakeDevOps().start()
    yield fake
    fake.stop()


@pytest.fixture
def workspace() -> Iterator[ScriptedWorkspace]:
    with ScriptedWorkspace(page_size=2, cancel_retry_after=0.05) as scripted:
        yield scripted


@pytest.fixture
def start_service(
    tmp_path: Path, devops: FakeDevOps, workspace: ScriptedWorkspace
) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(*extra: str) -> Service:
        service = Service(tmp_path / "service.db", devops, workspace.endpoint, list(extra))
        started.append(service.start())
        return service

    yield start
    for service in started:
        service.stop()
        assert TOKEN not in service.stderr(), "the AuthToken was logged"


def tagged(workspace: ScriptedWorkspace, tag: str, jobs: dict[str, list[Any]]) -> None:
    """Jobs carrying ``tag``; timelines count from now (not from the workspace's start)."""
    shift = time.time() - workspace.start_time
    for name, timeline in jobs.items():
        shifted = [(offset + shift, status) for offset, status in timeline]
        workspace.add_job(WS, name, shifted, tags={tag: "1"})


# -- the happy path ---------------------------------------------------------------------------


def test_invoke_rest_api_request_ends_in_one_task_completed_with_basic_auth(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    tag = "amlwait-batch-ok"
    tagged(
        workspace,
        tag,
        {
            "PLANT001_CIRCUIT01_2025_11_01": [(0, "Running"), (0.4, "Completed")],
            "PLANT001_CIRCUIT02_2025_11_01": [(0, "Queued"), (0.2, "Running"), (0.7, "Completed")],
        },
    )
    service = start_service()
    headers = callback_headers(devops.org_url)
    plan = headers["PlanId"]
    assert service.get("/v1/waits/none").status_code == 404
    started = time.monotonic()
    answer = service.post_wait(body(tag, 2), headers)
    assert answer.status_code == 202, answer.text
    assert time.monotonic() - started < 2
    wait_id = answer.json()["waitId"]

    eventually(lambda: completions_for(devops, plan), what="TaskCompleted")
    (completed,) = completions_for(devops, plan)
    assert completed.path == (
        f"/contoso/project-1/_apis/distributedtask/hubs/build/plans/{plan}/events"
    )
    assert completed.query == "api-version=2.0-preview.1"
    assert completed.json == {
        "name": "TaskCompleted",
        "taskId": "task-1",
        "jobId": "job-1",
        "result": "succeeded",
    }
    expected_auth = "Basic " + base64.b64encode(f":{TOKEN}".encode()).decode()
    assert completed.headers["authorization"] == expected_auth

    # Live feed lines, time-stamped, for the job's record.
    feed = feed_text(devops, plan)
    assert "PLANT001_CIRCUIT01_2025_11_01" in feed
    feed_call = next(c for c in devops.snapshot() if c.path.endswith("/feed"))
    assert feed_call.path.endswith(f"/plans/{plan}/timelines/timeline-1/records/job-1/feed")
    assert feed_call.json["count"] == len(feed_call.json["value"])
    assert feed_call.json["value"][0][:2] == "20"

    # The summary log: created, written, attached to the task's record, before completing.
    plan_calls = [c for c in devops.snapshot() if f"/plans/{plan}/" in c.path]
    kinds = [(c.method, c.path.split(f"/plans/{plan}/", 1)[1]) for c in plan_calls]
    log_index = kinds.index(("POST", "logs"))
    assert plan_calls[log_index].json == {"path": "logs\\task-1"}
    assert kinds[log_index + 1] == ("POST", "logs/1")
    assert b"PLANT001_CIRCUIT02_2025_11_01" in plan_calls[log_index + 1].body
    assert kinds[log_index + 2] == ("PATCH", "timelines/timeline-1/records")
    assert plan_calls[log_index + 2].json["value"][0] == {"id": "task-1", "log": {"id": 1}}
    assert kinds.index(("POST", "events")) > log_index + 2

    state = eventually(
        lambda: (doc := service.get(f"/v1/waits/{wait_id}").json())["state"] == "done" and doc
    )
    assert state["outcome"] == "succeeded"
    assert {job["name"]: job["status"] for job in state["jobs"]} == {
        "PLANT001_CIRCUIT01_2025_11_01": "Completed",
        "PLANT001_CIRCUIT02_2025_11_01": "Completed",
    }
    time.sleep(0.5)
    assert len(completions_for(devops, plan)) == 1
    # Every call carried the same Basic auth; none went anywhere but the allowed org.
    assert all(c.headers["authorization"] == expected_auth for c in devops.snapshot())


def test_a_failed_job_fails_the_task_and_names_the_job(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    tag = "amlwait-batch-fail"
    tagged(
        workspace,
        tag,
        {
            "job_ok": [(0, "Running"), (0.3, "Completed")],
            "job_bad": [(0, "Running"), (0.3, "Failed")],
        },
    )
    service = start_service()
    headers = callback_headers(devops.org_url)
    assert service.post_wait(body(tag, 2), headers).status_code == 202
    eventually(lambda: completions_for(devops, headers["PlanId"]))
    (completed,) = completions_for(devops, headers["PlanId"])
    assert completed.json["result"] == "failed"
    assert "job_bad" in feed_text(devops, headers["PlanId"])


def test_deadline_fails_the_task_and_cancels_when_asked(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    tag = "amlwait-batch-late"
    tagged(workspace, tag, {"slow_job": [(0, "Running")]})
    service = start_service()
    headers = callback_headers(devops.org_url)
    answer = service.post_wait(body(tag, 1, timeout="1s", cancelRemaining=True), headers)
    assert answer.status_code == 202, answer.text
    eventually(lambda: completions_for(devops, headers["PlanId"]))
    (completed,) = completions_for(devops, headers["PlanId"])
    assert completed.json["result"] == "failed"
    assert "deadline reached with 1 job unfinished" in feed_text(devops, headers["PlanId"])
    assert [c.job.name for c in workspace.cancellations] == ["slow_job"]


def test_fewer_jobs_than_expected_within_the_grace_fail_the_task(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    tag = "amlwait-batch-partial"
    tagged(workspace, tag, {"only_one": [(0, "Completed")]})
    service = start_service()
    headers = callback_headers(devops.org_url)
    assert service.post_wait(body(tag, 3), headers).status_code == 202
    eventually(lambda: completions_for(devops, headers["PlanId"]))
    (completed,) = completions_for(devops, headers["PlanId"])
    assert completed.json["result"] == "failed"
    assert "only 1 of 3 jobs tagged" in feed_text(devops, headers["PlanId"])


def test_an_explicit_job_list_is_followed(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    tag = "amlwait-batch-list"
    tagged(workspace, tag, {"listed_a": [(0, "Completed")], "listed_b": [(0, "Completed")]})
    service = start_service()
    headers = callback_headers(devops.org_url)
    answer = service.post_wait(body(tag, 2, jobs=["listed_a", "listed_b"]), headers)
    assert answer.status_code == 202, answer.text
    eventually(lambda: completions_for(devops, headers["PlanId"]))
    assert completions_for(devops, headers["PlanId"])[0].json["result"] == "succeeded"


def test_the_same_plan_job_and_task_is_one_wait_and_one_completion(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    tag = "amlwait-batch-twice"
    tagged(workspace, tag, {"twice": [(0, "Running"), (0.5, "Completed")]})
    service = start_service()
    headers = callback_headers(devops.org_url)
    first = service.post_wait(body(tag, 1), headers)
    second = service.post_wait(body(tag, 1), headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["waitId"] == second.json()["waitId"]
    eventually(lambda: completions_for(devops, headers["PlanId"]))
    third = service.post_wait(body(tag, 1), headers)
    assert third.json()["waitId"] == first.json()["waitId"]
    time.sleep(0.5)
    assert len(devops.completion_attempts()) == 1
    assert service.store_metrics()["amlwait_store_done_waits"] == 1


# -- durability -------------------------------------------------------------------------------


def test_kill_9_mid_wait_and_restart_completes_exactly_once(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    tag = "amlwait-batch-kill"
    first = start_service()
    tagged(workspace, tag, {"survivor": [(0, "Running"), (2.0, "Completed")]})
    headers = callback_headers(devops.org_url)
    wait_id = first.post_wait(body(tag, 1), headers).json()["waitId"]
    eventually(
        lambda: job_statuses(first, wait_id) == {"survivor": "Running"}, what="progress saved"
    )
    first.kill()
    assert completions_for(devops, headers["PlanId"]) == []

    second = start_service()
    eventually(lambda: completions_for(devops, headers["PlanId"]), what="TaskCompleted")
    time.sleep(0.5)
    (completed,) = completions_for(devops, headers["PlanId"])
    assert completed.json["result"] == "succeeded"
    assert len(devops.completion_attempts()) == 1
    assert "resumes this wait" in feed_text(devops, headers["PlanId"])
    assert second.get(f"/v1/waits/{wait_id}").json()["state"] == "done"


def test_devops_down_for_a_while_then_back_gets_one_completion(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    tag = "amlwait-batch-down"
    tagged(workspace, tag, {"steady": [(0, "Completed")]})
    devops.fail_completed(3, "500")
    devops.fail_completed(1, "timeout")
    service = start_service()
    headers = callback_headers(devops.org_url)
    wait_id = service.post_wait(body(tag, 1), headers).json()["waitId"]
    eventually(lambda: completions_for(devops, headers["PlanId"]), timeout=20)
    time.sleep(0.5)
    assert len(completions_for(devops, headers["PlanId"])) == 1
    assert len(devops.completion_attempts()) == 5
    assert service.get(f"/v1/waits/{wait_id}").json()["state"] == "done"


# -- Event Grid -------------------------------------------------------------------------------


def test_event_grid_handshakes_need_the_key_and_answer_the_code(
    start_service: Callable[..., Service],
) -> None:
    service = start_service()
    validation = [
        {
            "id": "1",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "subject": "",
            "data": {"validationCode": "CODE-123", "validationUrl": "https://x.example/v"},
        }
    ]
    url = f"{service.url}/v1/events/eventgrid"
    ok = httpx.post(
        url,
        params={"key": EVENTGRID_KEY},
        json=validation,
        headers={"aeg-event-type": "SubscriptionValidation"},
    )
    assert ok.status_code == 200
    assert ok.json() == {"validationResponse": "CODE-123"}
    # The service key is accepted too; a wrong or missing key is not.
    assert httpx.post(url, params={"key": KEY}, json=validation).status_code == 200
    assert httpx.post(url, params={"key": "nope"}, json=validation).status_code == 401
    assert httpx.post(url, json=validation).status_code == 401

    origin = {"WebHook-Request-Origin": "eventemitter.example.com"}
    cloud = httpx.options(url, params={"key": EVENTGRID_KEY}, headers=origin)
    assert cloud.status_code == 200
    assert cloud.headers["WebHook-Allowed-Origin"] == "eventemitter.example.com"
    assert httpx.options(url, headers=origin).status_code == 401


def test_a_run_event_makes_the_wait_read_the_job_at_once(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    tag = "amlwait-batch-event"
    # Polls so slowly that only the event can explain a quick completion.
    service = start_service("--poll-interval", "60s", "--max-poll-interval", "60s")
    tagged(workspace, tag, {"evented": [(0, "Running"), (1.5, "Completed")]})
    added = time.monotonic()
    headers = callback_headers(devops.org_url)
    wait_id = service.post_wait(body(tag, 1), headers).json()["waitId"]
    eventually(lambda: job_statuses(service, wait_id) == {"evented": "Running"})
    time.sleep(max(0.0, 1.8 - (time.monotonic() - added)))
    assert completions_for(devops, headers["PlanId"]) == [], "read before the event"
    event = {
        "id": "e1",
        "eventType": "Microsoft.MachineLearningServices.RunCompleted",
        "subject": "experiments/0000/runs/evented",
        "data": {"runId": "evented", "runStatus": "completed", "runTags": {tag: "1"}},
    }
    answer = httpx.post(
        f"{service.url}/v1/events/eventgrid", params={"key": EVENTGRID_KEY}, json=[event]
    )
    assert answer.json() == {"events": 1, "waitsWoken": 1}
    eventually(lambda: completions_for(devops, headers["PlanId"]), timeout=3)
    assert completions_for(devops, headers["PlanId"])[0].json["result"] == "succeeded"


def run_event(run_id: str, status: str, tag: str, kind: str = "RunStatusChanged") -> dict[str, Any]:
    return {
        "id": f"{run_id}-{status}",
        "eventType": f"Microsoft.MachineLearningServices.{kind}",
        "subject": f"experiments/0000/runs/{run_id}",
        "data": {"runId": run_id, "runStatus": status, "runTags": {tag: "1"}},
    }


def test_events_turn_polling_into_a_safety_net_and_an_end_is_verified_by_one_get(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    tag = "amlwait-batch-events"
    # FAST polls every 0.1-0.2 s; once events arrive, only every 10 minutes.
    service = start_service("--event-poll-interval", "10m")
    tagged(
        workspace,
        tag,
        {name: [(0, "Running"), (2.0, "Completed")] for name in ("ev-a", "ev-b", "ev-c")},
    )
    headers = callback_headers(devops.org_url)
    wait_id = service.post_wait(body(tag, 3), headers).json()["waitId"]
    eventually(lambda: set(job_statuses(service, wait_id).values()) == {"Running"})

    def post(*events: dict[str, Any]) -> Any:
        url = f"{service.url}/v1/events/eventgrid"
        return httpx.post(url, params={"key": EVENTGRID_KEY}, json=list(events)).json()

    # A run that only moved on is not read: it tells the wait that events flow.
    assert post(run_event("ev-a", "running", tag)) == {"events": 1, "waitsWoken": 0}
    eventually(lambda: "polling every 10m" in feed_text(devops, headers["PlanId"]))
    settled = len(workspace.requests)
    time.sleep(1.0)  # at FAST's pace this would be five listings or more
    quiet = workspace.requests[settled:]
    assert len(quiet) <= 2, [(r.method, r.path) for r in quiet]

    # The jobs end; their events each cost one GET of that job, and no listing.
    time.sleep(1.2)  # the jobs are Completed 2 s after they were tagged
    before = len(workspace.requests)
    answer = post(
        run_event("ev-a", "completed", tag, "RunCompleted"),
        run_event("ev-b", "Completed", tag),
        run_event("ev-c", "failed", tag),
    )
    assert answer == {"events": 3, "waitsWoken": 3}
    completion = eventually(lambda: completions_for(devops, headers["PlanId"]), timeout=5)
    assert completion[0].json["result"] == "succeeded"
    reads = workspace.requests[before:]
    assert sorted(r.job for r in reads if r.method == "GET" and r.job) == ["ev-a", "ev-b", "ev-c"]
    # (After the jobs end, the run-time reads — workspace, discovery, MLflow — follow.)
    listings = [
        r for r in reads if r.job is None and r.method == "GET" and r.path.endswith("/jobs")
    ]
    assert not listings, "listed after events"


# -- refusals ---------------------------------------------------------------------------------


def test_every_refusal_is_one_line_and_stores_and_sends_nothing(
    start_service: Callable[..., Service], devops: FakeDevOps, workspace: ScriptedWorkspace
) -> None:
    service = start_service()
    org = devops.org_url
    good_body = body("amlwait-batch-refused", 1)
    long_tag = "t" * 101

    def without(name: str) -> dict[str, str]:
        headers = callback_headers(org, plan="plan-refused")
        del headers[name]
        return headers

    cases: list[tuple[str, dict[str, str], str | bytes, int]] = [
        ("no key", without("X-Amlwait-Key"), good_body, 401),
        ("wrong key", callback_headers(org, **{"X-Amlwait-Key": "wrong"}), good_body, 401),
        ("disallowed org", callback_headers("https://dev.azure.com/fabrikam/"), good_body, 403),
        ("org prefix trick", callback_headers(org.rstrip("/") + "evil/"), good_body, 403),
        ("http, not loopback", callback_headers("http://dev.azure.com/contoso/"), good_body, 403),
        ("missing PlanId", without("PlanId"), good_body, 400),
        ("missing TaskInstanceId", without("TaskInstanceId"), good_body, 400),
        ("missing AuthToken", without("AuthToken"), good_body, 400),
        ("path in an id", callback_headers(org, ProjectId="../x"), good_body, 400),
        ("malformed JSON", callback_headers(org), '{"subscription": ', 400),
        ("not an object", callback_headers(org), "[1, 2]", 400),
        ("unknown field", callback_headers(org), body("tag", 1, extra=1), 400),
        ("too long", callback_headers(org), body("tag", 1, workspace="w" * 2000), 400),
        ("huge", callback_headers(org), b"{" + b" " * 100_000 + b"}", 400),
        ("invalid job name", callback_headers(org), body("tag", 1, jobs=["bad name!"]), 400),
        ("empty tag", callback_headers(org), body(" ", 1), 400),
        ("tag too long", callback_headers(org), body(long_tag, 1), 400),
        ("expectedJobs text", callback_headers(org), body("tag", 3).replace(": 3", ': "3"'), 400),
        ("missing field", callback_headers(org), '{"tag": "x", "expectedJobs": 1}', 400),
        ("bad timeout", callback_headers(org), body("tag", 1, timeout="forever"), 400),
        ("jobs disagree", callback_headers(org), body("tag", 2, jobs=["a"]), 400),
    ]
    before = service.store_metrics()
    for name, headers, text, status in cases:
        answer = service.post_wait(text, headers)
        assert answer.status_code == status, (name, answer.text)
        message = answer.json()["error"]
        assert message and "\n" not in message and TOKEN not in message, (name, message)
    assert service.store_metrics() == before
    assert before["amlwait_store_active_waits"] == 0
    time.sleep(0.3)
    assert devops.snapshot() == [], "a refused request caused a call to Azure DevOps"
    assert workspace.requests == [], "a refused request caused a call to Azure ML"

    assert service.get("/v1/waits/whatever", key=None).status_code == 401
    assert service.get("/v1/waits/whatever", key="wrong").status_code == 401
    assert service.get("/metrics", key=None).status_code == 401
    health = service.get("/healthz", key=None)
    assert health.status_code == 200 and health.text == "ok\n"
    metrics = service.get("/metrics").text
    assert "amlwait_store_active_waits 0" in metrics
    assert "amlwait_arm_errors_total" in metrics
    assert 'amlwait_http_requests_total{route="create_wait"}' in metrics


def test_serve_refuses_to_start_without_a_key_or_an_org(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "AMLWAIT"))}
    run = [sys.executable, "-m", "amlwait.service", "--store", f"sqlite:///{tmp_path}/s.db"]
    no_key = subprocess.run(
        [*run, "--allow-org", "https://dev.azure.com/contoso/"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert no_key.returncode == 2
    assert "AMLWAIT_SERVICE_KEY" in no_key.stderr and len(no_key.stderr.splitlines()) == 1
    no_org = subprocess.run(
        [*run, "--insecure-no-auth"], env=env, capture_output=True, text=True, timeout=30
    )
    assert no_org.returncode == 2 and "--allow-org" in no_org.stderr
    exposed = subprocess.run(
        [*run, "--insecure-no-auth", "--host", "0.0.0.0", "--allow-org", "https://x.example/"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert exposed.returncode == 2 and "loopback" in exposed.stderr
