"""What an Azure Pipelines agent reads from ``amlwait wait``: logging commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from amlwait.devops import vso
from amlwait.workspace import ScriptedWorkspace
from tests.helpers import WS, amlwait, manifest


@pytest.fixture
def workspace(realtime_workspace: ScriptedWorkspace) -> ScriptedWorkspace:
    return realtime_workspace


NASTY = "a;b]c%d\re\nf%AZP25 ;]%0A"


def unescape(text: str) -> str:
    """The agent's decoding of an escaped value (the reverse of the documented rules)."""
    for escaped, raw in (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%AZP25", "%")):
        text = text.replace(escaped, raw)
    return text


def parse(line: str) -> tuple[str, dict[str, str], str]:
    match = re.fullmatch(r"##vso\[(\S+)(?: ([^\]]*))?\](.*)", line)
    assert match, line
    properties = {}
    for part in (match.group(2) or "").split(";"):
        if part:
            key, _, value = part.partition("=")
            properties[key] = unescape(value)
    return match.group(1), properties, unescape(match.group(3))


def test_values_and_messages_survive_escaping() -> None:
    line = vso.log_issue("error", NASTY, code=NASTY)
    assert "\n" not in line and "\r" not in line
    name, properties, message = parse(line)
    assert (name, properties["type"], properties["code"], message) == (
        "task.logissue",
        "error",
        NASTY,
        NASTY,
    )


def test_a_message_keeps_semicolons_and_brackets_unescaped() -> None:
    assert vso.log_issue("warning", "a;b]") == "##vso[task.logissue type=warning]a;b]"
    assert vso.set_progress(140, "x") == "##vso[task.setprogress value=100;]x"


def test_a_variable_value_round_trips() -> None:
    _, properties, value = parse(vso.set_variable("failedJobs", NASTY))
    assert properties == {"variable": "failedJobs", "isoutput": "true"}
    assert value == NASTY


def test_a_failed_wait_in_a_pipeline_speaks_to_the_agent(workspace, tmp_path: Path) -> None:
    workspace.add_job(WS, "GOOD", [(0, "Running"), (0.3, "Completed")])
    workspace.add_job(WS, "BAD", [(0, "Running"), (0.3, "Failed")])
    result = amlwait(
        "wait",
        manifest(tmp_path, {"jobs": ["GOOD", "BAD"]}),
        "--poll-interval",
        "0.05s",
        "--max-poll-interval",
        "0.2s",
        endpoint=workspace.endpoint,
        env={
            "TF_BUILD": "True",
            "AGENT_TEMPDIRECTORY": str(tmp_path),
            "AGENT_NAME": "Azure Pipelines 2",
        },
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"##[section]amlwait: waiting for 2 jobs in {WS}")
    assert "##[group]Jobs (2)" in lines and "##[endgroup]" in lines
    deadline = [
        parse(line) for line in lines if line.startswith("##vso[task.logissue type=warning")
    ]
    assert any("Microsoft-hosted agents" in message for _, _, message in deadline)
    progress = [
        parse(line)[1]["value"] for line in lines if line.startswith("##vso[task.setprogress")
    ]
    assert progress[-1] == "100"
    errors = [parse(line) for line in lines if line.startswith("##vso[task.logissue type=error")]
    assert len(errors) == 1
    # How long it ran (the scripted timeline's 0.3 s, from run history, not amlwait's
    # measure), Azure ML's error code and message, then the Studio link.
    assert errors[0][2].startswith(
        "BAD failed after 0.3s: UserError: The scripted job failed. — "
        "https://ml.azure.com/runs/BAD?wsid="
    )
    variables = {
        parse(line)[1]["variable"]: parse(line)[2]
        for line in lines
        if line.startswith("##vso[task.setvariable")
    }
    assert variables == {
        "outcome": "failed",
        "total": "2",
        "succeeded": "1",
        "failed": "1",
        "canceled": "0",
        "notFound": "0",
        "unfinished": "0",
        "retried": "0",
        "failedJobs": "BAD",
    }
    uploads = [parse(line)[2] for line in lines if line.startswith("##vso[task.uploadsummary]")]
    assert len(uploads) == 1 and Path(uploads[0]).is_absolute()
    assert "BAD" in Path(uploads[0]).read_text()


def test_outside_a_pipeline_no_logging_commands_are_printed(workspace, tmp_path: Path) -> None:
    workspace.add_job(WS, "J", [(0, "Completed")])
    result = amlwait("wait", manifest(tmp_path, {"jobs": ["J"]}), endpoint=workspace.endpoint)
    assert result.returncode == 0
    assert "##vso" not in result.stdout and "##[" not in result.stdout


@pytest.mark.parametrize("flag", ["--azure-devops"])
def test_the_flag_turns_logging_commands_on(workspace, tmp_path: Path, flag: str) -> None:
    workspace.add_job(WS, "J", [(0, "Completed")])
    result = amlwait(
        "wait",
        manifest(tmp_path, {"jobs": ["J"]}),
        flag,
        "--summary",
        str(tmp_path / "s.md"),
        endpoint=workspace.endpoint,
    )
    assert result.returncode == 0
    assert f"##vso[task.uploadsummary]{tmp_path / 's.md'}" in result.stdout


HOSTILE = "x\n##vso[task.setvariable variable=outcome;isoutput=true]succeeded\r##[error]forged"


def agent_reads(stdout: str) -> tuple[list[tuple[str, dict[str, str], str]], list[str]]:
    """What the agent takes from stdout: a command from the first ``##vso[`` anywhere in a
    line (its ``Command.TryParse`` uses ``IndexOf``), a formatting command from a line
    starting with ``##[``; lines end at ``\\n`` (a lone ``\\r`` ends one too in the log view)."""
    commands, formats = [], []
    for line in re.split(r"\r\n|\r|\n", stdout):
        at = line.find("##vso[")
        if at >= 0:
            commands.append(parse(line[at:]))
        elif line.startswith("##["):
            formats.append(line[3 : line.index("]")] if "]" in line else line)
    return commands, formats


def test_hostile_values_cannot_start_a_logging_command_through_the_reporter() -> None:
    import io

    from amlwait.core.jobs import JobRef, WorkspaceRef
    from amlwait.core.status import Outcome
    from amlwait.core.tracker import BatchOutcome, JobState
    from amlwait.devops.reporter import AzureDevOpsReporter
    from amlwait.events import JobFinished, WaitStarted, Warning_
    from amlwait.result import WaitResult

    where = WorkspaceRef("sub-1", "rg-1", HOSTILE)
    job = JobState(JobRef(where, "BAD"), status=HOSTILE, reason=HOSTILE, studio_url=HOSTILE)
    job.outcome = Outcome.FAILED
    out = io.StringIO()
    reporter = AzureDevOpsReporter(out, environ={"AGENT_NAME": "self"})

    reporter(WaitStarted(jobs=[job], workspaces=[where], deadline=60.0, at=0.0, tag=HOSTILE))
    reporter(JobFinished(job, Outcome.FAILED, at=1.0))
    reporter(Warning_(job, HOSTILE, HOSTILE, at=1.0))
    reporter.finish(
        WaitResult(BatchOutcome.FAILED, [job], requests=1, started_at=0, ended_at=1, deadline=60),
        None,
    )

    commands, formats = agent_reads(out.getvalue())
    assert formats == ["section", "group", "endgroup"]
    assert [name for name, _, _ in commands] == ["task.logissue"] * 2 + ["task.setvariable"] * 9
    variables = {
        props["variable"]: value for name, props, value in commands if props.get("variable")
    }
    assert variables["outcome"] == "failed"
    assert variables["failedJobs"] == "BAD"
    assert {props["type"] for name, props, _ in commands if name == "task.logissue"} == {
        "error",
        "warning",
    }


def test_a_hostile_status_from_arm_starts_no_command_in_a_real_wait(
    workspace, tmp_path: Path
) -> None:
    forged = "Running\n##vso[task.setvariable variable=outcome;isoutput=true]succeeded"
    workspace.add_job(WS, "BAD", [(0, forged), (2.0, "Failed")])
    result = amlwait(
        "wait",
        manifest(tmp_path, {"jobs": ["BAD"]}),
        "--poll-interval",
        "0.05s",
        "--max-poll-interval",
        "0.2s",
        endpoint=workspace.endpoint,
        env={"TF_BUILD": "True", "AGENT_TEMPDIRECTORY": str(tmp_path)},
    )

    assert result.returncode == 1, result.stderr
    assert "BAD  Running\\n##vso [task.setvariable" in result.stdout  # shown, defused
    commands, formats = agent_reads(result.stdout + "\n" + result.stderr)
    variables = {props["variable"]: value for _, props, value in commands if "variable" in props}
    assert variables["outcome"] == "failed"
    assert [v for _, props, v in commands if props.get("variable") == "outcome"] == ["failed"]
    assert set(formats) <= {"section", "group", "endgroup"}
