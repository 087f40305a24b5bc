"""A command job runs as Azure ML's runtime would run it: code folder, inputs, outputs, logs."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
import pytest
from click.testing import CliRunner, Result

from amlwait.core.jobs import JobRef
from amlwait.workspace import LocalWorkspace, ScriptedWorkspace
from amlwait.workspace.cli import logs
from tests.workspace.helpers import (
    WORKSPACE,
    arm_client,
    get,
    job_path,
    put_job,
    run_error,
    status_of,
    wait_for_status,
)

TERMINAL = {"Completed", "Failed", "Canceled"}
PYTHON = shlex.quote(sys.executable)

REPORT_SCRIPT = """\
import json, os, sys
from pathlib import Path

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
report = {
    "args": args,
    "cwd": os.getcwd(),
    "data_files": sorted(os.listdir(args["--data"])),
    "env": {k: v for k, v in os.environ.items() if k.startswith(("AZURE_ML_", "AZUREML_", "X"))},
}
Path(args["--model"], "report.json").write_text(json.dumps(report))
Path(args["--metrics"]).write_text("accuracy=0.9")
print("trained", args["--plant"])
"""


@pytest.fixture
def code_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "code-folder"
    (folder / "pkg").mkdir(parents=True)
    (folder / "train.py").write_text(REPORT_SCRIPT)
    (folder / "pkg" / "helper.txt").write_text("helper")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "train.cpython.pyc").write_bytes(b"\0")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main")
    return folder


def _local_path(uri: str) -> Path:
    parts = urlsplit(uri)
    assert parts.scheme == "file"
    return Path(url2pathname(parts.path))


def _error_of(client: httpx.Client, name: str) -> str:
    return str(run_error(client, name)["message"])


def test_the_code_folder_is_copied_and_is_the_working_directory(
    local_workspace: LocalWorkspace, local_client: httpx.Client, code_folder: Path
) -> None:
    before = sorted(p.relative_to(code_folder) for p in code_folder.rglob("*"))
    put_job(
        local_client,
        "job_code",
        command='pwd > where.txt; cat pkg/helper.txt; echo " from $(basename "$PWD")"',
        codeId=code_folder.as_uri(),
    )

    assert wait_for_status(local_client, "job_code", TERMINAL) == "Completed"
    run_dir = local_workspace.run_dir(JobRef(WORKSPACE, "job_code"))
    copy = run_dir / "code"
    assert Path((copy / "where.txt").read_text().strip()).resolve() == copy.resolve()
    assert (copy / "train.py").read_text() == REPORT_SCRIPT
    assert not (copy / "__pycache__").exists()
    assert not (copy / ".git").exists()
    assert "helper from code" in local_workspace.log_path(JobRef(WORKSPACE, "job_code")).read_text()
    assert sorted(p.relative_to(code_folder) for p in code_folder.rglob("*")) == before


def test_inputs_and_outputs_are_substituted_and_exported(
    local_workspace: LocalWorkspace, local_client: httpx.Client, code_folder: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n")
    put_job(
        local_client,
        "job_io",
        command=(
            f"{PYTHON} train.py --plant ${{{{inputs.plant}}}} --rows ${{{{inputs.rows}}}} "
            "--data ${{inputs.data}} --model ${{outputs.model}} --metrics ${{outputs.metrics}}"
        ),
        codeId=code_folder.as_uri(),
        environmentId="azureml:local-python@latest",
        computeId="local",
        inputs={
            "plant": {"jobInputType": "literal", "value": "PLANT001"},
            "rows": {"jobInputType": "literal", "value": "200"},
            "data": {"jobInputType": "uri_folder", "uri": data.as_uri(), "mode": "ReadOnlyMount"},
        },
        outputs={
            "model": {"jobOutputType": "uri_folder"},
            "metrics": {"jobOutputType": "uri_file"},
        },
        environmentVariables={"X": "1"},
        experimentName="e",
    )

    assert wait_for_status(local_client, "job_io", TERMINAL) == "Completed"
    outputs = get(local_client, job_path("job_io")).json()["properties"]["outputs"]
    run_dir = local_workspace.run_dir(JobRef(WORKSPACE, "job_io"))
    model = _local_path(outputs["model"]["uri"])
    metrics = _local_path(outputs["metrics"]["uri"])
    assert model == run_dir / "outputs" / "model"
    assert metrics == run_dir / "outputs" / "metrics"
    assert outputs["model"]["jobOutputType"] == "uri_folder"
    assert metrics.read_text() == "accuracy=0.9"
    report = json.loads((model / "report.json").read_text())
    assert report["args"] == {
        "--plant": "PLANT001",
        "--rows": "200",
        "--data": str(data),
        "--model": str(model),
        "--metrics": str(metrics),
    }
    assert report["data_files"] == ["rows.csv"]
    assert report["env"] == {
        "X": "1",
        "AZUREML_RUN_ID": "job_io",
        "AZUREML_EXPERIMENT_NAME": "e",
        "AZURE_ML_INPUT_plant": "PLANT001",
        "AZURE_ML_INPUT_rows": "200",
        "AZURE_ML_INPUT_data": str(data),
        "AZURE_ML_OUTPUT_model": str(model),
        "AZURE_ML_OUTPUT_metrics": str(metrics),
    }


def test_outputs_show_their_local_uri_as_soon_as_the_job_is_put(
    local_client: httpx.Client, tmp_path: Path
) -> None:
    chosen = tmp_path / "elsewhere" / "model"

    response = put_job(
        local_client,
        "job_uri",
        command="echo ok > ${{outputs.model}}/done.txt",
        outputs={"model": {"jobOutputType": "uri_folder", "uri": chosen.as_uri()}},
    )

    assert response.status_code == 201
    assert response.json()["properties"]["outputs"]["model"]["uri"] == chosen.as_uri()
    assert wait_for_status(local_client, "job_uri", TERMINAL) == "Completed"
    assert (chosen / "done.txt").read_text() == "ok\n"


def test_a_missing_code_folder_fails_the_job_with_a_clear_message(
    local_client: httpx.Client, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder"
    put_job(local_client, "job_nocode", command="true", codeId=missing.as_uri())

    assert wait_for_status(local_client, "job_nocode", TERMINAL) == "Failed"
    message = _error_of(local_client, "job_nocode")
    assert f"The code folder {missing} (properties.codeId) does not exist" in message
    log = get(local_client, job_path("job_nocode") + "/amlwaitLogs").text
    assert message in log


def test_a_missing_input_path_fails_the_job_naming_the_input(
    local_client: httpx.Client, tmp_path: Path
) -> None:
    put_job(
        local_client,
        "job_noinput",
        command="cat ${{inputs.table}}",
        inputs={"table": {"jobInputType": "uri_file", "uri": str(tmp_path / "absent.csv")}},
    )

    assert wait_for_status(local_client, "job_noinput", TERMINAL) == "Failed"
    assert "Input 'table' (uri_file)" in _error_of(local_client, "job_noinput")


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"command": "echo ${{inputs.x}}"}, "refers to '${{inputs.x}}', but the job has no input"),
        (
            {
                "command": "echo ${{outputs.model}}",
                "outputs": {"m": {"jobOutputType": "uri_folder"}},
            },
            "no output 'model' (it has: m)",
        ),
        ({"command": "echo ${{search_space.lr}}"}, "substitutes only ${{inputs.NAME}}"),
        ({"codeId": "azureml:my-code:1"}, "Azure ML code asset"),
        (
            {"codeId": f"{WORKSPACE.arm_path}/codes/my-code/versions/1"},
            "give the code folder as a file:// URI",
        ),
        ({"codeId": "https://example.com/code.zip"}, "is not a local path"),
        (
            {
                "inputs": {
                    "d": {"jobInputType": "uri_folder", "uri": "azureml://datastores/x/paths/y"}
                }
            },
            "properties.inputs.d.uri",
        ),
        ({"inputs": {"d": {"jobInputType": "uri_folder", "uri": "relative/dir"}}}, "not a local"),
        ({"inputs": {"n": {"jobInputType": "literal"}}}, "must be a string for a literal input"),
        ({"inputs": {"n": {"value": "1"}}}, "jobInputType None is not supported"),
        (
            {"outputs": {"m": {"jobOutputType": "uri_folder", "uri": "azureml://datastores/x"}}},
            "is not a file:// URI",
        ),
    ],
)
def test_a_job_that_cannot_run_is_refused_at_put(
    local_client: httpx.Client, properties: dict[str, Any], expected: str
) -> None:
    body = {"command": "true", **properties}

    response = put_job(local_client, "job_refused", **body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "UserError"
    assert expected in error["message"]
    assert get(local_client, job_path("job_refused")).status_code == 404


def test_the_workspace_data_dir_inside_the_code_folder_is_not_copied(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.sh").write_text("echo from-project\n")
    with (
        LocalWorkspace(project / ".amlwait-workspace") as workspace,
        arm_client(workspace.endpoint) as client,
    ):
        put_job(client, "job_self", command="sh main.sh; ls -a", codeId=str(project))

        assert wait_for_status(client, "job_self", TERMINAL) == "Completed"
        copy = workspace.run_dir(JobRef(WORKSPACE, "job_self")) / "code"
        assert sorted(p.name for p in copy.iterdir()) == ["main.sh"]


def test_a_prepared_job_finishes_across_a_restart(tmp_path: Path, code_folder: Path) -> None:
    data_dir = tmp_path / "ws"
    command = "sleep 0.5; cat pkg/helper.txt > ${{outputs.out}}/copied.txt"
    with LocalWorkspace(data_dir) as first, arm_client(first.endpoint) as client:
        put_job(
            client,
            "job_restart",
            command=command,
            codeId=code_folder.as_uri(),
            outputs={"out": {"jobOutputType": "uri_folder"}},
        )
        wait_for_status(client, "job_restart", {"Running"})
        first.stop(kill_jobs=False)

    with LocalWorkspace(data_dir) as second, arm_client(second.endpoint) as client:
        assert wait_for_status(client, "job_restart", TERMINAL) == "Completed"
        uri = get(client, job_path("job_restart")).json()["properties"]["outputs"]["out"]["uri"]
        assert (_local_path(uri) / "copied.txt").read_text() == "helper"


# -- the logs route and `amlwait logs` ---------------------------------------------------


def test_the_logs_route_serves_the_log_as_plain_text(
    local_client: httpx.Client,
) -> None:
    put_job(local_client, "job_log", command="echo out; echo err >&2")
    wait_for_status(local_client, "job_log", TERMINAL)

    response = get(local_client, job_path("job_log") + "/amlwaitLogs")
    unknown = get(local_client, job_path("job_absent") + "/amlwaitLogs")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "out\nerr\n"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == (
        "The job 'job_absent' was not found in workspace 'ws-1'."
    )


def test_the_log_of_a_job_that_has_not_started_is_empty(tmp_path: Path) -> None:
    with (
        LocalWorkspace(tmp_path, max_concurrent=1) as workspace,
        arm_client(workspace.endpoint) as client,
    ):
        put_job(client, "job_busy", command="sleep 5")
        put_job(client, "job_waiting", command="echo later")
        wait_for_status(client, "job_busy", {"Running"})

        response = get(client, job_path("job_waiting") + "/amlwaitLogs")

        assert status_of(client, "job_waiting") == "Queued"
        assert response.status_code == 200
        assert response.text == ""


@pytest.fixture
def invoke_logs() -> Iterator[Any]:
    def invoke(endpoint: str, *args: str) -> Result:
        options = ["--subscription", WORKSPACE.subscription, "-g", "rg-1", "-w", "ws-1"]
        return CliRunner().invoke(
            logs,
            [*options, "--arm-endpoint", endpoint, *args],
            env={"AMLWAIT_ACCESS_TOKEN": None, "AMLWAIT_ARM_ENDPOINT": None},
        )

    yield invoke


def test_amlwait_logs_prints_the_log(
    local_workspace: LocalWorkspace, local_client: httpx.Client, invoke_logs: Any
) -> None:
    put_job(local_client, "job_cli", command="echo line one; echo line two >&2")
    wait_for_status(local_client, "job_cli", TERMINAL)

    result = invoke_logs(local_workspace.endpoint, "job_cli")

    assert result.exit_code == 0, result.output
    assert result.stdout == "line one\nline two\n"
    assert result.stderr == ""
    record = local_workspace.requests[-1]
    assert record.path.endswith("/jobs/job_cli/amlwaitLogs")


def test_amlwait_logs_of_an_unknown_job_exits_1(
    local_workspace: LocalWorkspace, invoke_logs: Any
) -> None:
    result = invoke_logs(local_workspace.endpoint, "job_absent")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"amlwait: error: job 'job_absent' was not found in workspace 'ws-1' "
        f"at {local_workspace.endpoint}"
    )


def test_amlwait_logs_points_azure_users_to_studio_without_a_request(invoke_logs: Any) -> None:
    result = invoke_logs("https://management.azure.com", "job_cli")

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "only the local workspace serves logs" in lines[0]
    assert "az ml job stream --name job_cli" in lines[0]


def test_amlwait_logs_says_so_when_the_endpoint_has_no_logs_route(
    scripted_workspace: ScriptedWorkspace, invoke_logs: Any
) -> None:
    scripted_workspace.add_job(WORKSPACE, "job_scripted", [(0, "Running")])

    result = invoke_logs(scripted_workspace.endpoint, "job_scripted")

    assert result.exit_code == 2
    assert "only the local workspace serves logs" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["bad name!"], "is not a valid job name"),
        (["job_x", "--subscription", ""], "missing --subscription (or AZURE_SUBSCRIPTION_ID)"),
        ([], "Missing argument 'JOB'"),
    ],
)
def test_amlwait_logs_bad_input_is_one_line_and_exit_2(
    invoke_logs: Any, args: list[str], expected: str
) -> None:
    result = invoke_logs("http://127.0.0.1:9", *args)

    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert expected in lines[0]


def test_amlwait_logs_reports_an_unreachable_workspace_in_one_line(invoke_logs: Any) -> None:
    result = invoke_logs("http://127.0.0.1:9", "job_x")

    assert result.exit_code == 2
    assert "cannot reach the workspace at http://127.0.0.1:9" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_api_version_is_still_required_on_the_logs_route(local_client: httpx.Client) -> None:
    response = local_client.get(job_path("job_any") + "/amlwaitLogs")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"


def test_amlwait_logs_in_a_real_process_keeps_stdout_for_the_log(
    local_workspace: LocalWorkspace, local_client: httpx.Client
) -> None:
    put_job(local_client, "job_proc", command="echo from the job")
    wait_for_status(local_client, "job_proc", TERMINAL)
    source_root = Path(__file__).resolve().parents[2] / "src"
    env = {
        **os.environ,
        "PYTHONPATH": f"{source_root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "AZURE_SUBSCRIPTION_ID": WORKSPACE.subscription,
        "AZURE_RESOURCE_GROUP": "rg-1",
        "AZUREML_WORKSPACE_NAME": "ws-1",
        "AMLWAIT_ARM_ENDPOINT": local_workspace.endpoint,
    }
    env.pop("AMLWAIT_ACCESS_TOKEN", None)
    program = "from amlwait.workspace.cli import logs; logs()"

    found = subprocess.run(
        [sys.executable, "-c", program, "job_proc"], env=env, capture_output=True, text=True
    )
    absent = subprocess.run(
        [sys.executable, "-c", program, "job_gone"], env=env, capture_output=True, text=True
    )

    assert (found.returncode, found.stdout, found.stderr) == (0, "from the job\n", "")
    assert absent.returncode == 1
    assert absent.stdout == ""
    assert "job 'job_gone' was not found" in absent.stderr
