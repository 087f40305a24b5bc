"""``amlwait`` as a user runs it: a real process, real HTTP to a scripted workspace on
loopback, short real-time timelines (well under a second)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from amlwait.workspace import ScriptedWorkspace
from tests.helpers import FAST, SECRET, WS, amlwait, manifest


@pytest.fixture
def workspace(realtime_workspace: ScriptedWorkspace) -> ScriptedWorkspace:
    return realtime_workspace


def test_all_completed_exits_0_with_lines_and_a_summary(workspace, tmp_path) -> None:
    for name in ("PLANT001_CIRCUIT01_2025_11_01", "PLANT002_CIRCUIT01_2025_11_01"):
        # Long enough for the process to start and see the job running.
        workspace.add_job(WS, name, [(0, "Running"), (2.0, "Completed")])
    path = manifest(
        tmp_path, {"jobs": ["PLANT001_CIRCUIT01_2025_11_01", "PLANT002_CIRCUIT01_2025_11_01"]}
    )
    result = amlwait(
        "wait", path, *FAST, "--json", str(tmp_path / "r.json"), endpoint=workspace.endpoint
    )
    assert result.returncode == 0, result.stderr
    assert "PLANT001_CIRCUIT01_2025_11_01  Running -> Completed  (" in result.stdout
    assert "succeeded: 2 jobs — 2 succeeded" in result.stdout
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["outcome"] == "succeeded"
    assert [j["outcome"] for j in document["jobs"]] == ["succeeded", "succeeded"]
    assert document["requests"] >= 2


def test_a_failed_job_exits_1(workspace, tmp_path) -> None:
    workspace.add_job(WS, "GOOD", [(0, "Running"), (0.2, "Completed")])
    workspace.add_job(WS, "BAD", [(0, "Running"), (0.2, "Failed")])
    result = amlwait(
        "wait", manifest(tmp_path, {"jobs": ["GOOD", "BAD"]}), *FAST, endpoint=workspace.endpoint
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("failed: 2 jobs — 1 succeeded, 1 failed")
    table = lines[lines.index(next(line for line in lines if line.startswith("JOB "))) + 1]
    assert table.startswith("BAD "), "failed jobs come first in the summary"


def test_the_deadline_exits_3_and_timeout_zero_reads_once(workspace, tmp_path) -> None:
    workspace.add_job(WS, "SLOW", [(0, "Running")])
    path = manifest(tmp_path, {"jobs": ["SLOW"]})
    result = amlwait("wait", path, *FAST, "--timeout", "0.5s", endpoint=workspace.endpoint)
    assert result.returncode == 3
    assert "deadline reached with 1 job unfinished" in result.stdout
    before = len(workspace.requests)
    result = amlwait("wait", path, "--timeout", "0", endpoint=workspace.endpoint)
    assert result.returncode == 3
    assert len(workspace.requests) - before == 1


def test_fail_fast_with_cancel_remaining_cancels(workspace, tmp_path) -> None:
    workspace.add_job(WS, "BAD", [(0, "Running"), (0.1, "Failed")])
    workspace.add_job(WS, "SLOW", [(0, "Running")])
    result = amlwait(
        "wait",
        manifest(tmp_path, {"jobs": ["BAD", "SLOW"]}),
        *FAST,
        "--fail-fast",
        "--cancel-remaining",
        endpoint=workspace.endpoint,
    )
    assert result.returncode == 1
    assert "SLOW  cancel requested" in result.stdout
    assert [c.job.name for c in workspace.cancellations] == ["SLOW"]


def test_sigterm_exits_130_and_says_nothing_was_cancelled(workspace, tmp_path) -> None:
    workspace.add_job(WS, "SLOW", [(0, "Running")])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "AMLWAIT"))}
    env.update({"AMLWAIT_ARM_ENDPOINT": workspace.endpoint})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amlwait",
            "wait",
            manifest(tmp_path, {"jobs": ["SLOW"]}),
            "--subscription",
            WS.subscription,
            "-g",
            WS.resource_group,
            "-w",
            WS.workspace,
            *FAST,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 20
    while not any(r.job == "SLOW" for r in workspace.requests):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130, err
    assert "1 unfinished job was NOT cancelled" in out
    assert workspace.cancellations == []


def test_cancel_command_cancels_only_unfinished_jobs(workspace, tmp_path) -> None:
    workspace.add_job(WS, "DONE", [(0, "Completed")])
    workspace.add_job(WS, "GOING", [(0, "Running")])
    result = amlwait(
        "cancel", manifest(tmp_path, {"jobs": ["DONE", "GOING"]}), endpoint=workspace.endpoint
    )
    assert result.returncode == 0, result.stderr
    assert "DONE  already Completed" in result.stdout
    assert "GOING  Running -> cancel requested" in result.stdout
    assert "cancel requested for 1 of 2 jobs" in result.stdout


def test_the_manifest_can_come_from_stdin(workspace) -> None:
    workspace.add_job(WS, "J", [(0, "Completed")])
    result = amlwait("wait", "-", *FAST, stdin='{"jobs": ["J"]}', endpoint=workspace.endpoint)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "document", "message"),
    [
        (["--timeout", "soon"], {"jobs": ["J"]}, "'soon' is not a duration"),
        (
            ["--poll-interval", "1m", "--max-poll-interval", "10s"],
            {"jobs": ["J"]},
            "maximum poll interval must be at least the poll interval",
        ),
        ([], {"jobs": []}, "the job list is empty"),
        ([], {"jobs": ["J", "J"]}, "listed twice"),
        ([], {"jobs": ["bad name"]}, "not a valid Azure ML job name"),
        ([], {"jobs": ["J"], "colour": "red"}, "unknown field colour"),
        (["--arm-endpoint", "http://example.com"], {"jobs": ["J"]}, "plain http"),
        (["--json", "/nonexistent-dir/x.json"], {"jobs": ["J"]}, "does not exist"),
        (["--no-such-flag"], {"jobs": ["J"]}, "No such option '--no-such-flag'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, document, message) -> None:
    result = amlwait("wait", manifest(tmp_path, document), *args, endpoint="http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_a_missing_manifest_file_is_exit_2(tmp_path) -> None:
    result = amlwait("wait", str(tmp_path / "nope.json"), endpoint="http://127.0.0.1:9")
    assert result.returncode == 2
    assert "no such manifest file" in result.stderr


def test_a_refused_token_is_exit_2_and_never_printed(tmp_path) -> None:
    with ScriptedWorkspace(token="the-right-one") as secured:
        secured.add_job(WS, "J", [(0, "Completed")])
        result = amlwait(
            "wait",
            manifest(tmp_path, {"jobs": ["J"]}),
            *FAST,
            endpoint=secured.endpoint,
            env={"AMLWAIT_ACCESS_TOKEN": SECRET},
        )
        assert result.returncode == 2
        assert "401" in result.stderr
        assert SECRET not in result.stdout + result.stderr
        result = amlwait(
            "--debug",
            "wait",
            manifest(tmp_path, {"jobs": ["J"]}),
            *FAST,
            endpoint=secured.endpoint,
            env={"AMLWAIT_ACCESS_TOKEN": SECRET},
        )
        assert SECRET not in result.stdout + result.stderr


def test_help_does_not_import_the_azure_sdks_or_http_stack() -> None:
    code = (
        "import sys; from amlwait.cli import cli; "
        "import click.testing as t; t.CliRunner().invoke(cli, ['wait', '--help']); "
        "heavy = [m for m in ('azure.identity', 'azure.core', 'httpx', 'pydantic', 'rich', "
        "'starlette', 'uvicorn') if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.skipif(shutil.which("script") is None, reason="util-linux 'script' (a pty) is missing")
def test_on_a_terminal_a_live_table_is_drawn_then_the_summary(workspace, tmp_path) -> None:
    workspace.add_job(WS, "J", [(0, "Running"), (1.0, "Completed")])
    path = manifest(tmp_path, {"jobs": ["J"]})
    command = " ".join([sys.executable, "-m", "amlwait", "wait", path, *FAST])
    result = subprocess.run(
        [
            "script",
            "-qec",
            command,
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "AMLWAIT_ARM_ENDPOINT": workspace.endpoint,
            "AZURE_SUBSCRIPTION_ID": WS.subscription,
            "AZURE_RESOURCE_GROUP": WS.resource_group,
            "AZUREML_WORKSPACE_NAME": WS.workspace,
            "TF_BUILD": "",
        },
    )
    assert result.returncode == 0, result.stdout
    assert "\x1b[" in result.stdout, "a terminal gets Rich's live table"
    assert "succeeded: 1 job — 1 succeeded" in result.stdout
