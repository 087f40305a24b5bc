"""``amlwait submit --as-pipeline`` end to end against the local workspace (real HTTP, real
processes): one pipeline job, one step per circuit, idempotent, and every refusal one line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from amlwait.core.jobs import JobRef
from amlwait.core.manifest import ConnectionDefaults, parse_manifest
from amlwait.submit.command import build_batch
from amlwait.submit.pipeline import pipeline_name, plan_pipeline
from amlwait.workspace import LocalWorkspace
from tests.helpers import WS
from tests.submit.helpers import Project, make_project, run_submit, write

NAME = "TRAINING_2025_11_01"
NODES = {
    "plant001_circuit01": "PLANT001_CIRCUIT01_2025_11_01",
    "plant001_circuit02": "PLANT001_CIRCUIT02_2025_11_01",
    "plant002_circuit01": "PLANT002_CIRCUIT01_2025_11_01",
}


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path / "ws", max_concurrent=2) as local:
        yield local


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "repo")


def finished(workspace: LocalWorkspace, name: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = workspace.store.get_job(JobRef(WS, name))
        if job is not None and job.status in ("Completed", "Failed", "Canceled"):
            return job.status
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish")


def arm_puts(workspace: LocalWorkspace) -> list[str]:
    return [
        r.path.split("/providers/Microsoft.MachineLearningServices/workspaces/")[1].split("/", 1)[1]
        for r in workspace.requests
        if r.method == "PUT" and r.status in (200, 201) and "/workspaces/" in r.path
    ]


def test_the_batch_becomes_one_pipeline_job_whose_steps_run_and_one_fails(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline"))

    assert run.code == 0, run.err
    assert f"pipeline job {NAME} with 3 steps submitted" in run.out
    for node, job in NODES.items():
        assert node in run.out and job in run.out
    manifest = json.loads(project.output.read_text())
    assert manifest["jobs"] == [NAME] and manifest["pipeline"] == NAME
    assert manifest["steps"] == NODES
    assert manifest["tag"].startswith("amlwait-batch-")
    parsed = parse_manifest(
        project.output.read_text(),
        "m.json",
        ConnectionDefaults(WS.subscription, WS.resource_group, WS.workspace),
    )
    assert parsed.pipeline == NAME and dict(parsed.steps) == NODES

    assert finished(workspace, NAME) == "Failed"  # CIRCUIT02 exits 1 (circuits file: code 1)
    steps = {c.properties["displayName"]: c for c in workspace.store.children_of(JobRef(WS, NAME))}
    assert {name: step.status for name, step in steps.items()} == {
        "PLANT001_CIRCUIT01_2025_11_01": "Completed",
        "PLANT001_CIRCUIT02_2025_11_01": "Failed",
        "PLANT002_CIRCUIT01_2025_11_01": "Completed",
    }
    step = steps["PLANT001_CIRCUIT01_2025_11_01"]
    assert step.properties["tags"]["circuit"] == "CIRCUIT01"
    assert step.properties["tags"][manifest["tag"]] == "3"
    assert step.properties["codeId"].startswith(f"{WS.arm_path}/codes/")
    log = workspace.read_log(step.ref)
    assert log is not None and "PLANT001 CIRCUIT01 2025-11-01" in log
    parent = workspace.store.get_job(JobRef(WS, NAME))
    assert parent is not None and parent.tags == {manifest["tag"]: "3", "date": "2025-11-01"}


def test_submitting_again_reports_the_pipeline_job_and_sends_no_put(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline"))
    puts_after_first = len(arm_puts(workspace))
    second = run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline"))

    assert first.code == second.code == 0
    assert "exists (" in second.out and "nothing was submitted" in second.out
    assert len(arm_puts(workspace)) == puts_after_first
    assert json.loads(project.output.read_text())["pipeline"] == NAME


def test_the_steps_share_one_component_when_only_their_inputs_differ(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    batch = build_batch(
        examples / "circuits.yaml", examples / "job.yml", workspace=WS, run_date=date(2025, 11, 1)
    )

    plan = plan_pipeline(batch, "TRAINING_2025_11_01")

    assert len(plan.steps) == 6
    assert len({step.component_name for step in plan.steps}) == 1
    spec = plan.steps[0].component["componentSpec"]
    assert spec["is_deterministic"] is False  # a re-run must run, not reuse
    assert set(spec["inputs"]) == {"plant", "circuit", "sensor_table", "rows"}
    assert plan.properties()["settings"] == {"continue_on_step_failure": True}


def test_a_name_taken_by_an_ordinary_job_is_refused_in_one_line(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    import httpx

    httpx.put(
        f"{workspace.endpoint}{WS.arm_path}/jobs/{NAME}",
        params={"api-version": "2025-12-01"},
        json={"properties": {"jobType": "Command", "command": "true", "environmentId": "e"}},
        headers={"Authorization": "Bearer t"},
    ).raise_for_status()

    run = run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline"))

    assert run.code == 2
    assert f"job {NAME} already exists and is a Command job" in run.err
    assert len(run.err.strip().splitlines()) == 1
    assert not project.output.exists()
    assert [p for p in arm_puts(workspace) if p.startswith("components/")] == []


def test_a_pattern_giving_an_invalid_name_is_refused_before_any_request(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_submit(
        capsys,
        *project.args(workspace.endpoint, "--as-pipeline", "--pipeline-name", "train ing {date}"),
    )

    assert run.code == 2
    assert "--pipeline-name 'train ing {date}' gives 'TRAIN ING 2025-11-01'" in run.err
    assert workspace.requests == []


def test_a_step_the_service_refuses_is_exit_1_with_its_message_and_no_job(
    workspace: LocalWorkspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The local workspace refuses a step whose command names an input the step lacks.
    job = "type: command\ncommand: echo ${{inputs.absent}}\nenvironment: azureml:e:1\n"
    project = make_project(tmp_path / "absent", job=job)

    run = run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline", "--no-code-upload"))

    assert run.code == 1, run.err
    assert f"pipeline job {NAME} was not created" in run.err
    assert "properties.jobs.plant001_circuit01: properties.command refers to" in run.err
    assert "1 components registered, which a later run reuses" in run.err
    assert len(run.err.strip().splitlines()) == 1
    assert workspace.store.get_job(JobRef(WS, NAME)) is None
    assert not project.output.exists()


def test_two_circuits_with_one_node_name_are_refused(
    workspace: LocalWorkspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # P1/C_X and P1_C/X: distinct job names ({circuit}_{plant}), one node name p1_c_x.
    circuits = "plants:\n  P1:\n    circuits: [C_X]\n  P1_C:\n    circuits: [X]\n"
    project = make_project(tmp_path / "clash", circuits=circuits)
    write(project.job, project.job.read_text().replace("{code}", "0"))

    run = run_submit(
        capsys,
        *project.args(workspace.endpoint, "--as-pipeline", "--name-pattern", "{circuit}_{plant}"),
    )

    assert run.code == 2
    assert "both become pipeline node 'p1_c_x'" in run.err
    assert workspace.requests == []


def test_the_pipeline_name_pattern_fills_in_the_date() -> None:
    assert pipeline_name("TRAINING_{date:%Y_%m_%d}", date(2026, 1, 5)) == "TRAINING_2026_01_05"
    assert pipeline_name("nightly-{date:%Y%m%d}", date(2026, 1, 5)) == "NIGHTLY-20260105"


def test_dry_run_prints_the_pipeline_and_sends_nothing(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline", "--dry-run"))

    assert run.code == 0
    assert f"dry run: pipeline job {NAME} with 3 steps" in run.out
    assert workspace.requests == [] and not project.output.exists()


def test_retry_failed_submits_the_next_attempt_with_the_circuits_that_did_not_complete(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline"))
    assert first.code == 0 and finished(workspace, NAME) == "Failed"

    retried = run_submit(
        capsys, *project.args(workspace.endpoint, "--as-pipeline", "--retry-failed")
    )
    again = run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline"))

    assert retried.code == 0, retried.err
    assert f"pipeline job {NAME}_r2 with 1 step" in retried.out
    assert f"resubmitted (NotStarted) for the circuits {NAME} did not complete" in retried.out
    steps = workspace.store.children_of(JobRef(WS, f"{NAME}_r2"))
    assert [s.properties["displayName"] for s in steps] == ["PLANT001_CIRCUIT02_2025_11_01"]
    assert f"pipeline job {NAME}_r2 with 1 step exists" in again.out
    manifest = json.loads(project.output.read_text())
    assert manifest["pipeline"] == f"{NAME}_r2"
    assert manifest["steps"] == {"plant001_circuit02": "PLANT001_CIRCUIT02_2025_11_01"}
