"""``amlwait wait`` and ``amlwait report`` on a pipeline manifest: the pipeline job decides
the exit code, its steps (read from run history) are the per-circuit report on every
surface. Real HTTP against the local workspace, which runs the steps."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amlwait.workspace import LocalWorkspace
from tests.helpers import WS
from tests.submit.helpers import Project, make_project, run_submit, write

NAME = "TRAINING_2025_11_01"
CIRCUITS = [
    "PLANT001_CIRCUIT01_2025_11_01",
    "PLANT001_CIRCUIT02_2025_11_01",
    "PLANT002_CIRCUIT01_2025_11_01",
]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    import amlwait.cli as main_cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main_cli.main(list(args))
    captured = capsys.readouterr()
    code = stop.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path / "ws", max_concurrent=3) as local:
        yield local


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "repo")


def connection(endpoint: str) -> list[str]:
    return [
        "--subscription", WS.subscription, "-g", WS.resource_group, "-w", WS.workspace,
        "--arm-endpoint", endpoint,
    ]  # fmt: skip


def reports(folder: Path) -> list[str]:
    return [
        "--junit", str(folder / "junit.xml"), "--json", str(folder / "result.json"),
        "--summary", str(folder / "summary.md"), "--html", str(folder / "report.html"),
        "--no-azure-devops",
    ]  # fmt: skip


def test_wait_follows_the_pipeline_job_and_reports_each_circuit(
    workspace: LocalWorkspace, project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    submitted = run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline"))
    assert submitted.code == 0, submitted.err

    code, out, err = run(
        capsys,
        "wait", str(project.output), *connection(workspace.endpoint),
        "--poll-interval", "0.2s", "--max-poll-interval", "0.5s", "--timeout", "60s",
        *reports(tmp_path),
    )  # fmt: skip

    assert code == 1, out + err
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["outcome"] == "failed"
    assert [job["name"] for job in result["jobs"]] == CIRCUITS
    statuses = {job["name"]: job["status"] for job in result["jobs"]}
    assert statuses == dict(zip(CIRCUITS, ["Completed", "Failed", "Completed"], strict=True))
    failed = next(job for job in result["jobs"] if job["status"] == "Failed")
    assert "exited with status code 1" in failed["reason"]
    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    junit = {case.get("name"): case.find("failure") is not None for case in cases}
    assert junit == dict(zip(CIRCUITS, [False, True, False], strict=True))
    summary = (tmp_path / "summary.md").read_text()
    assert "1 of 3 jobs failed" in summary and "CIRCUIT02" in summary
    for name in CIRCUITS:
        assert name in (tmp_path / "report.html").read_text()


def test_report_reads_once_and_writes_the_same_reports(
    workspace: LocalWorkspace, project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline"))
    run(capsys, "wait", str(project.output), *connection(workspace.endpoint),
        "--poll-interval", "0.2s", "--timeout", "60s")  # fmt: skip
    before = len(workspace.requests)

    code, out, err = run(
        capsys, "report", str(project.output), *connection(workspace.endpoint), *reports(tmp_path)
    )

    assert code == 1, out + err
    result = json.loads((tmp_path / "result.json").read_text())
    assert [job["name"] for job in result["jobs"]] == CIRCUITS
    assert len(list(ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"))) == 3
    # one read of the pipeline job, then workspace, discovery and the steps
    assert len(workspace.requests) - before <= 5


def test_report_before_the_pipeline_ends_is_exit_3(
    workspace: LocalWorkspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path / "slow", job="type: command\ncommand: sleep 30\n"
                           "environment: azureml:e:1\n")  # fmt: skip
    write(project.circuits, "plants:\n  P1:\n    circuits: [C1]\n")
    run_submit(capsys, *project.args(workspace.endpoint, "--as-pipeline", "--no-code-upload"))

    code, out, _ = run(
        capsys, "report", str(project.output), *connection(workspace.endpoint), *reports(tmp_path)
    )

    assert code == 3, out
    result = json.loads((tmp_path / "result.json").read_text())
    assert [job["outcome"] for job in result["jobs"]] == ["unfinished"]


def test_steps_are_matched_by_node_or_display_name_and_a_missing_one_is_not_found() -> None:
    from amlwait.core.jobs import JobRef
    from amlwait.core.manifest import Manifest
    from amlwait.core.pipeline import StepRun
    from amlwait.core.status import Outcome
    from amlwait.core.tracker import BatchOutcome, JobState
    from amlwait.pipeline_result import per_step_result
    from amlwait.result import WaitResult

    parent = JobRef(WS, NAME)
    manifest = Manifest(
        jobs=(parent,), tag=None, source="m", pipeline=NAME,
        steps=(("a", "A_1"), ("b", "B_1"), ("c", "C_1")),
    )  # fmt: skip
    waited = WaitResult(
        outcome=BatchOutcome.FAILED,
        jobs=[JobState(parent, status="Failed", outcome=Outcome.FAILED)],
        requests=4, started_at=0.0, ended_at=9.0, deadline=99.0,
    )  # fmt: skip
    runs = [
        StepRun("r1", "whatever", "a", "Failed", "boom", "2026-01-05T00:00:00Z",
                "2026-01-05T00:00:01Z", "2026-01-05T00:00:05Z"),
        StepRun("r2", "B_1", None, "Completed", None, None, None, None),
    ]  # fmt: skip

    result = per_step_result(waited, manifest, runs, requests=3)

    assert [(j.name, j.status, j.outcome) for j in result.jobs] == [
        ("A_1", "Failed", Outcome.FAILED),
        ("B_1", "Completed", Outcome.SUCCEEDED),
        ("C_1", None, Outcome.NOT_FOUND),
    ]
    assert result.jobs[0].reason == "boom" and result.jobs[0].finished_at is not None
    assert result.jobs[0].ended_at - result.jobs[0].started_at == 4.0  # run history's times
    assert "r1" in result.jobs[0].link
    assert (result.outcome, result.requests) == (BatchOutcome.FAILED, 7)


def _waited_pipeline() -> Any:
    from amlwait.core.jobs import JobRef
    from amlwait.core.status import Outcome
    from amlwait.core.tracker import BatchOutcome, JobState
    from amlwait.result import WaitResult

    parent = JobRef(WS, NAME)
    return WaitResult(
        outcome=BatchOutcome.FAILED,
        jobs=[JobState(parent, status="Failed", outcome=Outcome.FAILED)],
        requests=4, started_at=0.0, ended_at=9.0, deadline=99.0,
    )  # fmt: skip


class _Steps:
    """A job source that reads steps (or fails to): what ``per_circuit`` asks of one."""

    def __init__(self, answer: Any, requests: int = 0) -> None:
        self.answer = answer
        self.requests_sent = requests

    async def pipeline_steps(self, pipeline: Any) -> Any:
        if isinstance(self.answer, BaseException):
            raise self.answer
        if self.answer == "hang":
            await asyncio.sleep(60)
        self.requests_sent += 1  # the ARM workspace GET
        return self.answer, 2  # and two data-plane requests


def test_per_circuit_reports_all_steps_by_display_name_without_a_manifest() -> None:
    from amlwait.core.pipeline import StepRun
    from amlwait.pipeline_wait import per_circuit

    waited = _waited_pipeline()
    runs = [
        StepRun("r1", "A_1", "a", "Failed", "boom", None, None, None),
        StepRun("r2", "B_1", "b", "Completed", None, None, None, None),
    ]

    made = asyncio.run(per_circuit(waited, waited.jobs[0].ref, _Steps(runs, requests=10)))  # type: ignore[arg-type]

    assert made.problem is None
    assert [(j.name, j.status, j.reason) for j in made.result.jobs] == [
        ("A_1", "Failed", "boom"),
        ("B_1", "Completed", None),
    ]
    assert (made.result.outcome, made.result.requests) == (waited.outcome, 4 + 1 + 2)


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("not a source", "this job source cannot read them"),
        ("raise", "run history refused the request (403)"),
        ("hang", "no answer within 0.05 s"),
    ],
)
def test_per_circuit_keeps_the_pipeline_result_and_says_why_when_steps_cannot_be_read(
    answer: str, why: str
) -> None:
    from amlwait.azureml.tracking import TrackingError
    from amlwait.pipeline_wait import per_circuit

    waited = _waited_pipeline()
    source: Any = {
        "not a source": object(),
        "raise": _Steps(TrackingError("run history refused the request (403)")),
        "hang": _Steps("hang"),
    }[answer]

    made = asyncio.run(per_circuit(waited, waited.jobs[0].ref, source, timeout=0.05))

    assert made.result is waited
    assert made.problem == (
        f"the steps of pipeline job {NAME} could not be read ({why}); "
        "the reports show the pipeline job alone"
    )
