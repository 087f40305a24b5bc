"""``amlwait submit`` end to end: real HTTP against the local workspace, which runs the jobs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import amlwait.azureml.arm as arm
from amlwait.core.jobs import JobRef
from amlwait.core.retry import RetryPolicy
from amlwait.workspace import LocalWorkspace
from tests.helpers import WS
from tests.submit.helpers import Project, make_project, run_submit

NAMES = [
    "PLANT001_CIRCUIT01_2025_11_01",
    "PLANT001_CIRCUIT02_2025_11_01",
    "PLANT002_CIRCUIT01_2025_11_01",
]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path / "ws", max_concurrent=2) as local:
        yield local


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "repo")


def puts(workspace: LocalWorkspace) -> list[str]:
    """The names of the jobs PUT (code-version and blob PUTs are not jobs)."""
    return [
        r.job
        for r in workspace.requests
        if r.method == "PUT" and r.status in (200, 201) and r.job is not None
    ]


def manifest_of(project: Project) -> dict[str, object]:
    document: dict[str, object] = json.loads(project.output.read_text())
    return document


def wait_for_status(workspace: LocalWorkspace, name: str, status: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = workspace.store.get_job(JobRef(WS, name))
        if job is not None and job.status == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not reach {status}")


def test_first_submit_creates_every_job_with_tags_and_a_second_creates_nothing(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_submit(capsys, *project.args(workspace.endpoint))
    assert first.code == 0, first.err
    assert sorted(puts(workspace)) == NAMES
    manifest = manifest_of(project)
    assert manifest["jobs"] == NAMES
    tag = manifest["tag"]
    assert isinstance(tag, str) and tag.startswith("amlwait-batch-")
    job = workspace.store.get_job(JobRef(WS, NAMES[1]))
    assert job is not None
    assert dict(job.tags) == {
        "owner": "data-team",
        "plant": "PLANT001",
        "circuit": "CIRCUIT02",
        "date": "2025-11-01",
        tag: "3",
    }
    assert job.properties["inputs"]["day"] == {"jobInputType": "literal", "value": "2025_11_01"}
    assert "PLANT001/CIRCUIT02  PLANT001_CIRCUIT02_2025_11_01  submitted" in first.out
    assert "3 circuits: 3 submitted, 0 already existed" in first.out

    second = run_submit(capsys, *project.args(workspace.endpoint))
    assert second.code == 0, second.err
    assert len(puts(workspace)) == 3  # nothing new
    assert "PLANT002/CIRCUIT01  PLANT002_CIRCUIT01_2025_11_01  exists (" in second.out
    assert manifest_of(project) == manifest


def test_retry_failed_resubmits_exactly_the_failed_circuit_as_r2(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_submit(capsys, *project.args(workspace.endpoint)).code == 0
    wait_for_status(workspace, NAMES[1], "Failed")  # its circuit's code parameter is 1

    plain = run_submit(capsys, *project.args(workspace.endpoint))
    assert "exists (Failed)" in plain.out
    assert len(puts(workspace)) == 3

    retry = run_submit(capsys, *project.args(workspace.endpoint, "--retry-failed"))
    assert retry.code == 0, retry.err
    assert puts(workspace)[3:] == [NAMES[1] + "_r2"]
    assert f"resubmitted as {NAMES[1]}_r2 ({NAMES[1]} was Failed)" in retry.out
    assert manifest_of(project)["jobs"] == [NAMES[0], NAMES[1] + "_r2", NAMES[2]]
    r2 = workspace.store.get_job(JobRef(WS, NAMES[1] + "_r2"))
    assert r2 is not None and r2.tags["circuit"] == "CIRCUIT02"

    again = run_submit(capsys, *project.args(workspace.endpoint))
    assert f"exists as {NAMES[1]}_r2 (" in again.out
    assert manifest_of(project)["jobs"] == [NAMES[0], NAMES[1] + "_r2", NAMES[2]]


def test_a_circuit_that_cannot_be_submitted_fails_alone_and_a_rerun_completes_the_batch(
    workspace: LocalWorkspace,
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(arm, "RetryPolicy", lambda: RetryPolicy(attempts=2, initial=0.01, jitter=0))
    workspace.faults.add("500", match=NAMES[0], times=100)
    failed = run_submit(capsys, *project.args(workspace.endpoint))
    assert failed.code == 1
    line = next(x for x in failed.out.splitlines() if x.startswith("PLANT001/CIRCUIT01"))
    assert "failed: GET PLANT001_CIRCUIT01_2025_11_01 kept failing: 500" in line
    assert sorted(puts(workspace)) == NAMES[1:]
    assert manifest_of(project)["jobs"] == NAMES[1:]
    assert "run the same command again" in failed.out

    workspace.faults.clear()
    rerun = run_submit(capsys, *project.args(workspace.endpoint))
    assert rerun.code == 0, rerun.err
    assert sorted(puts(workspace)) == sorted([*NAMES[1:], NAMES[0]])
    assert "1 submitted, 2 already existed" in rerun.out
    assert manifest_of(project)["jobs"] == NAMES


def test_dry_run_sends_nothing_and_writes_no_manifest(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_submit(capsys, *project.args(workspace.endpoint, "--dry-run"))
    assert run.code == 0, run.err
    assert workspace.requests == []
    assert not project.output.exists()
    assert "PLANT001/CIRCUIT02  PLANT001_CIRCUIT02_2025_11_01" in run.out
    assert "print('PLANT001 CIRCUIT02 2025-11-01'); sys.exit(1)" in run.out
    assert "nothing was sent, no manifest written" in run.out


def test_matrix_variable_lines_carry_the_jobs_as_legs(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_submit(capsys, *project.args(workspace.endpoint, "--matrix-variable", "legs"))
    assert run.code == 0, run.err
    prefix = "##vso[task.setvariable variable=legs_0;isoutput=true]"
    line = next(x for x in run.out.splitlines() if x.startswith(prefix))
    legs = json.loads(line.removeprefix(prefix))
    assert list(legs) == NAMES
    assert legs[NAMES[0]] == {
        "jobName": NAMES[0],
        "subscription": WS.subscription,
        "resourceGroup": WS.resource_group,
        "workspace": WS.workspace,
    }
    assert "##vso[task.setvariable variable=legs_count;isoutput=true]1" in run.out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--only", "PLANT009/CIRCUIT01"], "--only PLANT009/CIRCUIT01: not in"),
        (["--name-pattern", "{plant}"], "both get the job name PLANT001"),
        (["--matrix-variable", "bad-name"], "--variable 'bad-name'"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_any_request(
    workspace: LocalWorkspace,
    project: Project,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    run = run_submit(capsys, *project.args(workspace.endpoint, *extra))
    assert run.code == 2
    assert run.err.startswith("amlwait: error: ") and run.err.count("\n") == 1
    assert message in run.err
    assert workspace.requests == []


def test_a_duplicate_circuit_exits_2_naming_file_line_and_key(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.circuits.write_text("plants:\n  P1:\n    circuits:\n      C1: {}\n      C1: {}\n")
    run = run_submit(capsys, *project.args(workspace.endpoint))
    assert run.code == 2
    assert run.err == (
        f"amlwait: error: {project.circuits}:5: plants.P1.circuits.C1: appears twice "
        "(first at line 4); YAML would keep only the last one\n"
    )
    assert workspace.requests == []


def test_the_installed_command_refuses_bad_input_with_exit_2(project: Project) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "amlwait", "submit", "--circuits", str(project.circuits),
         "--job", str(project.job), "--subscription", "s", "-g", "g", "-w", "w",
         "--only", "NOPE", "--dry-run"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("amlwait: error: --only NOPE: not in")
    assert result.stderr.count("\n") == 1
