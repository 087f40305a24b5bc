"""The local workspace honours Azure DevOps webhooks: the rendered PATCH (Microsoft's
documented body, macros expanded as Azure DevOps would) registers one on a job, and when
the job ends the workspace posts exactly one TaskCompleted to the fake plan API, with the
right result — for a pipeline job (after its steps) and for a single command job."""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amlwait.core.jobs import JobRef
from amlwait.devops.pipelines.webhook import webhook_body
from amlwait.service.testing import AUTH_TOKEN, FakeDevOps
from amlwait.workspace import LocalWorkspace
from tests.workspace.helpers import WORKSPACE, arm_client, job_path, put_job, wait_for_status
from tests.workspace.test_pipeline_jobs import node, put_component, put_pipeline

V = {"api-version": "2024-04-01"}  # as Microsoft's example sends it
TERMINAL = {"Completed", "Failed", "Canceled"}
MACROS = {
    "$(system.TeamProjectId)": "project-1",
    "$(system.HostType)": "build",
    "$(system.PlanId)": "plan-1",
    "$(system.JobId)": "job-1",
    "$(system.TimelineId)": "timeline-1",
    "$(system.TaskInstanceId)": "task-1",
    "$(system.AccessToken)": AUTH_TOKEN,
}


def expanded_body(collection_uri: str) -> str:
    """The rendered PATCH body as Azure DevOps sends it, its macros expanded."""
    text = webhook_body().replace("$(system.CollectionUri)", collection_uri)
    for macro, value in MACROS.items():
        text = text.replace(macro, value)
    return text


@pytest.fixture
def devops() -> Iterator[FakeDevOps]:
    fake = FakeDevOps().start()
    yield fake
    fake.stop()


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path / "ws", max_concurrent=2, cancel_retry_after=0.05) as ws:
        yield ws


@pytest.fixture
def client(workspace: LocalWorkspace) -> Iterator[httpx.Client]:
    with arm_client(workspace.endpoint) as client:
        yield client


def patch(client: httpx.Client, name: str, body: str) -> httpx.Response:
    return client.patch(
        job_path(name), params=V, content=body, headers={"Content-Type": "application/json"}
    )


def one_completion(devops: FakeDevOps, workspace: LocalWorkspace, name: str) -> dict[str, str]:
    deadline = time.monotonic() + 20
    while not devops.accepted_completions() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # five more runner rounds (0.1 s each): nothing is sent twice
    (call,) = devops.accepted_completions()
    assert call.path == "/contoso/project-1/_apis/distributedtask/hubs/build/plans/plan-1/events"
    assert call.query == "api-version=2.0-preview.1"
    expected = base64.b64encode(f":{AUTH_TOKEN}".encode()).decode()
    assert call.headers["authorization"] == f"Basic {expected}"
    assert workspace.store.webhook_outcomes(JobRef(WORKSPACE, name)) == {
        "ADO_Webhook_timeline-1": f"delivered: {call.json['result']}"
    }
    body: dict[str, str] = call.json
    return body


def test_a_pipeline_jobs_webhook_completes_the_task_once_after_its_steps(
    client: httpx.Client, workspace: LocalWorkspace, devops: FakeDevOps
) -> None:
    put_component(client, "train", "echo ${{inputs.circuit}}; sleep 0.3")
    put_component(client, "broken", f"{sys.executable} -c 'import sys; sys.exit(3)'")
    put_pipeline(
        client, "TRAINING_W", {"a": node("train", "A"), "b": node("broken", "B")}, keep_going=True
    )

    patched = patch(client, "TRAINING_W", expanded_body(devops.org_url))
    assert patched.status_code == 200, patched.text
    assert devops.snapshot() == []  # nothing before the steps end
    final = wait_for_status(client, "TRAINING_W", TERMINAL, timeout=20)
    completion = one_completion(devops, workspace, "TRAINING_W")

    assert final == "Failed"
    assert completion == {
        "name": "TaskCompleted",
        "taskId": "task-1",
        "jobId": "job-1",
        "result": "failed",
    }
    shown = client.get(job_path("TRAINING_W"), params=V).text
    assert AUTH_TOKEN not in shown and "planUri" in shown


def test_a_command_jobs_webhook_completes_the_task_succeeded(
    client: httpx.Client, workspace: LocalWorkspace, devops: FakeDevOps
) -> None:
    put_job(client, "single", "sleep 0.3")
    patch(client, "single", expanded_body(devops.org_url)).raise_for_status()

    assert wait_for_status(client, "single", TERMINAL, timeout=20) == "Completed"
    assert one_completion(devops, workspace, "single")["result"] == "succeeded"


def test_a_canceled_job_completes_the_task_canceled(
    client: httpx.Client, workspace: LocalWorkspace, devops: FakeDevOps
) -> None:
    put_job(client, "long", "sleep 30")
    patch(client, "long", expanded_body(devops.org_url)).raise_for_status()
    wait_for_status(client, "long", {"Running"}, timeout=10)
    client.post(job_path("long") + "/cancel", params=V)

    assert wait_for_status(client, "long", TERMINAL, timeout=20) == "Canceled"
    assert one_completion(devops, workspace, "long")["result"] == "canceled"


def test_a_webhook_to_another_host_is_never_called(
    client: httpx.Client, workspace: LocalWorkspace
) -> None:
    put_job(client, "far", "true")
    patch(client, "far", expanded_body("https://dev.azure.com/contoso/")).raise_for_status()
    wait_for_status(client, "far", TERMINAL, timeout=20)

    outcome = wait_until_recorded(workspace, "far")

    assert outcome == "not sent: the local workspace calls back to loopback addresses only"


def wait_until_recorded(workspace: LocalWorkspace, name: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        outcomes = workspace.store.webhook_outcomes(JobRef(WORKSPACE, name))
        if outcomes:
            (outcome,) = outcomes.values()
            return outcome
        time.sleep(0.05)
    raise AssertionError("no webhook outcome recorded")


def test_a_failing_plan_api_is_retried_until_it_answers(
    client: httpx.Client,
    workspace: LocalWorkspace,
    devops: FakeDevOps,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from amlwait.workspace import webhooks

    monkeypatch.setattr(webhooks, "RETRY_SECONDS", 0.05)
    devops.fail_completed(2)
    put_job(client, "flaky", "true")
    patch(client, "flaky", expanded_body(devops.org_url)).raise_for_status()

    wait_for_status(client, "flaky", TERMINAL, timeout=20)
    completion = one_completion(devops, workspace, "flaky")

    assert completion["result"] == "succeeded"
    assert len(devops.completion_attempts()) == 3


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"properties": {"tags": {"a": "b"}}}', "properties.tags cannot be patched"),
        (
            '{"properties": {"notificationSetting": {"webhooks": {"w": '
            '{"webhookType": "Slack"}}}}}',
            "webhookType must be 'AzureDevOps'",
        ),
        (
            '{"properties": {"notificationSetting": {"webhooks": {"w": {"webhookType": '
            '"AzureDevOps", "Token": "x"}}}}}',
            "w.Token is not a field",
        ),
    ],
)
def test_a_patch_the_workspace_cannot_honour_is_refused_naming_the_field(
    client: httpx.Client, body: str, words: str
) -> None:
    put_job(client, "target", "true")

    refused = patch(client, "target", body)

    assert refused.status_code == 400
    assert words in refused.json()["error"]["message"]
    assert patch(client, "absent", expanded_body("http://127.0.0.1:1/")).status_code == 404
