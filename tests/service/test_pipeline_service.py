"""``amlwait serve`` on a batch submitted as one pipeline job: the service finds the tagged
pipeline job, follows it, and reports its steps per circuit — as ``amlwait wait`` does on a
pipeline manifest. End to end on loopback: the local workspace really runs the pipeline's
steps, ``python -m amlwait.service`` follows it, a fake DevOps plan API takes the callbacks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from amlwait.service.testing import FakeDevOps, callback_headers
from amlwait.service.testing import ServiceProcess as Service
from amlwait.service.testing import wait_body as body
from amlwait.workspace import LocalWorkspace
from tests.submit.helpers import make_project, run_submit

CIRCUITS = [
    "PLANT001_CIRCUIT01_2025_11_01",
    "PLANT001_CIRCUIT02_2025_11_01",
    "PLANT002_CIRCUIT01_2025_11_01",
]
FAILED = "PLANT001_CIRCUIT02_2025_11_01"


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def devops() -> Iterator[FakeDevOps]:
    fake = FakeDevOps().start()
    yield fake
    fake.stop()


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path / "ws", max_concurrent=3) as local:
        yield local


def plan_calls(devops: FakeDevOps, plan: str) -> list[Any]:
    return [call for call in devops.snapshot() if f"/plans/{plan}/" in call.path]


def test_a_tagged_pipeline_job_ends_in_one_task_completed_with_a_line_per_circuit(
    tmp_path: Path,
    devops: FakeDevOps,
    workspace: LocalWorkspace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = make_project(tmp_path / "repo")
    submitted = run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline"))
    assert submitted.code == 0, submitted.err
    tag = json.loads(project.output.read_text())["tag"]
    service = Service(tmp_path / "service.db", devops, workspace.endpoint, []).start()
    try:
        headers = callback_headers(devops.org_url)
        plan = headers["PlanId"]
        # One job carries the batch tag: the pipeline job (its steps are listed under it).
        answer = service.post_wait(body(tag, 1), headers)
        assert answer.status_code == 202, answer.text
        wait_id = answer.json()["waitId"]

        def completed() -> list[Any]:
            return [c for c in devops.accepted_completions() if f"/plans/{plan}/" in c.path]

        eventually(completed, 90, "TaskCompleted")
        time.sleep(0.5)
        (completion,) = completed()
        assert completion.json["result"] == "failed"

        calls = plan_calls(devops, plan)
        log_text = next(
            c.body.decode() for c in calls if c.method == "POST" and c.path.endswith("/logs/1")
        )
        lines = log_text.splitlines()
        for circuit in CIRCUITS:
            (row,) = [line for line in lines if line.startswith(circuit)]
            assert ("Failed" if circuit == FAILED else "Completed") in row, row
        failed_row = next(i for i, line in enumerate(lines) if line.startswith(FAILED))
        assert "exited with status code 1" in lines[failed_row + 1]
        assert f"1 job ended badly: {FAILED}" in log_text
        assert "failed: 3 jobs" in log_text

        feed = "\n".join(
            line for c in calls if c.path.endswith("/feed") for line in c.json["value"]
        )
        assert "is a pipeline job" in feed
        state = service.get(f"/v1/waits/{wait_id}").json()
        assert {job["name"]: job["status"] for job in state["jobs"]} == {
            circuit: "Failed" if circuit == FAILED else "Completed" for circuit in CIRCUITS
        }
    finally:
        service.stop()
