"""Where a job's failure reason and true times are read: run history, MLflow, discovery."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from amlwait.core.clock import VirtualClock
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.workspace import LocalWorkspace, ScriptedWorkspace
from amlwait.workspace.errors import ArmError
from amlwait.workspace.tracking import RunApi, parse_filter
from tests.workspace.helpers import (
    WORKSPACE,
    arm_client,
    put_job,
    run_error,
    wait_for_status,
)

HISTORY = f"/history/v1.0{WORKSPACE.arm_path}/runs"
MLFLOW = f"/mlflow/v1.0{WORKSPACE.arm_path}/api/2.0/mlflow"
TERMINAL = {"Completed", "Failed", "Canceled"}


def test_a_failed_local_job_gives_its_exit_code_and_last_stderr_lines_as_reason(
    local_client: httpx.Client,
) -> None:
    command = (
        f"{sys.executable} -c \"import sys; print('loading'); "
        "print('warning: old table', file=sys.stderr); "
        "sys.exit('error: sensor table plant002_c01_missing does not exist')\""
    )
    put_job(local_client, "train_bad", command=command)
    assert wait_for_status(local_client, "train_bad", TERMINAL, timeout=20) == "Failed"

    error = run_error(local_client, "train_bad")
    details = local_client.get(f"{HISTORY}/train_bad/details").json()

    assert error["code"] == "UserError"
    assert "status code 1" in error["message"]
    assert "error: sensor table plant002_c01_missing does not exist" in error["message"]
    assert "warning: old table" in error["message"]
    assert "loading" not in error["message"]  # stdout is not the reason
    assert details["runId"] == "train_bad" and details["status"] == "Failed"
    assert details["startTimeUtc"] <= details["endTimeUtc"]


def test_a_completed_job_has_true_times_and_no_error(local_client: httpx.Client) -> None:
    put_job(local_client, "train_ok", command="sleep 0.4")
    assert wait_for_status(local_client, "train_ok", TERMINAL, timeout=20) == "Completed"

    run = local_client.get(f"{HISTORY}/train_ok").json()
    mlflow = local_client.get(f"{MLFLOW}/runs/get", params={"run_id": "train_ok"}).json()

    assert "error" not in run
    assert run["startTimeUtc"] and run["endTimeUtc"] and run["createdUtc"]
    info = mlflow["run"]["info"]
    assert info["status"] == "FINISHED"
    assert 400 <= info["end_time"] - info["start_time"] < 5000


def test_a_queued_job_has_no_times_yet(tmp_path: Path) -> None:
    with LocalWorkspace(tmp_path, max_concurrent=1) as local, arm_client(local.endpoint) as client:
        put_job(client, "busy", command="sleep 5")
        put_job(client, "waiting", command="true")
        wait_for_status(client, "busy", {"Running"})
        run = client.get(f"{HISTORY}/waiting/details").json()

    assert run["status"] in ("NotStarted", "Queued")
    assert run["startTimeUtc"] is None and run["endTimeUtc"] is None


def test_the_scripted_workspace_serves_scripted_reasons_and_timeline_times() -> None:
    clock = VirtualClock()
    with ScriptedWorkspace(clock) as scripted, arm_client(scripted.endpoint) as client:
        scripted.add_job(
            WORKSPACE,
            "train_1",
            [(0, "Queued"), (30, "Running"), (2490, "Failed")],
            failure=("UserError", "error: sensor table plant002_c01_missing does not exist"),
        )
        scripted.add_job(WORKSPACE, "train_2", [(0, "Running"), (100, "Completed")])
        clock.advance(3000)
        failed = client.get(f"{HISTORY}/train_1/details").json()
        mlflow = client.get(f"{MLFLOW}/runs/get", params={"run_id": "train_1"}).json()
        done = client.get(f"{HISTORY}/train_2").json()

    assert failed["error"]["error"] == {
        "code": "UserError",
        "message": "error: sensor table plant002_c01_missing does not exist",
    }
    info = mlflow["run"]["info"]
    assert info["end_time"] - info["start_time"] == 2460 * 1000  # 41 min, from the timeline
    assert info["status"] == "FAILED"
    assert "error" not in done


def test_discovery_points_every_service_back_at_this_server(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    document = httpx.get(f"{scripted_workspace.endpoint}/discovery").json()  # no token

    for key in ("api", "history", "experimentation", "pipelines", "modelmanagement"):
        assert document[key] == scripted_workspace.endpoint
    assert document["studio"] == "https://ml.azure.com"


def test_unknown_runs_and_workspaces_are_404s(tmp_path: Path) -> None:
    other = WorkspaceRef("00000000-0000-0000-0000-0000000000a1", "rg-1", "ws-other")
    with (
        LocalWorkspace(tmp_path, workspaces=[WORKSPACE]) as local,
        arm_client(local.endpoint) as client,
    ):
        missing_run = client.get(f"{HISTORY}/nope/details")
        missing_mlflow = client.get(f"{MLFLOW}/runs/get", params={"run_id": "nope"})
        other_ws = client.get(f"/history/v1.0{other.arm_path}/runs/nope/details")
        bad_filter = client.post(
            f"{MLFLOW}/runs/search",
            json={"experiment_ids": ["x"], "filter": "attributes.end_time > 5"},
        )

    assert missing_run.status_code == 404
    assert missing_mlflow.status_code == 404
    assert missing_mlflow.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert other_ws.json()["error"]["code"] == "ParentResourceNotFound"
    assert bad_filter.status_code == 400
    assert "not supported by Azure Machine Learning" in bad_filter.json()["message"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tags.batch = 'b1'", [("tag", "batch", "=", ("b1",))]),
        ('tags."plant-id" != "P1"', [("tag", "plant-id", "!=", ("P1",))]),
        (
            "attributes.run_id IN ('a', 'b') AND attributes.status = 'FAILED'",
            [("attribute", "run_id", "IN", ("a", "b")), ("attribute", "status", "=", ("FAILED",))],
        ),
        ("", []),
    ],
)
def test_filters_parse_as_mlflow_writes_them(text: str, expected: list[object]) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text", ["tags.a = 'x' OR tags.b = 'y'", "metrics.x > 1", "tags.a IN ('x')"]
)
def test_filters_azure_does_not_support_are_refused(text: str) -> None:
    with pytest.raises(ArmError):
        parse_filter(text)


def test_a_data_dir_of_schema_1_is_migrated_and_its_jobs_kept(tmp_path: Path) -> None:
    import sqlite3

    from amlwait.workspace.store import DATABASE_NAME, JobStore

    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, subscription TEXT NOT NULL,"
        " resource_group TEXT NOT NULL, workspace TEXT NOT NULL, name TEXT NOT NULL,"
        " properties TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,"
        " modified_at REAL NOT NULL, pid INTEGER, exit_code INTEGER, error TEXT,"
        " UNIQUE (subscription, resource_group, workspace, name));"
        "INSERT INTO jobs (subscription, resource_group, workspace, name, properties, status,"
        " created_at, modified_at, exit_code, error)"
        " VALUES ('00000000-0000-0000-0000-0000000000a1', 'rg-1', 'ws-1', 'old',"
        " '{}', 'Failed', 1.0, 2.0, 3, 'The command exited with code 3.');"
    )
    db.commit()
    db.close()

    store = JobStore(tmp_path)
    try:
        view = store.get_job(JobRef(WORKSPACE, "old"))
    finally:
        store.close()

    assert view is not None and view.status == "Failed"
    assert (view.error_code, view.started_at, view.ended_at) == ("UserError", None, None)


def test_a_run_id_search_looks_its_runs_up_by_name_with_the_scans_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = VirtualClock()
    with ScriptedWorkspace(clock) as scripted, arm_client(scripted.endpoint) as client:
        for i in range(30):
            status = "Failed" if i % 3 == 0 else "Completed"
            scripted.add_job(
                WORKSPACE, f"run_{i:02d}", [(0, "Running"), (10 + i, status)], tags={"b": "1"}
            )
        clock.advance(100)
        experiment = client.get(
            f"{MLFLOW}/experiments/get-by-name", params={"experiment_name": "Default"}
        ).json()["experiment"]["experiment_id"]
        ids = ", ".join(f"'run_{i:02d}'" for i in (4, 3, 29, 8)) + ", 'no_such_run', '..'"
        body = {
            "experiment_ids": [experiment],
            "filter": f"attributes.run_id IN ({ids}) AND attributes.status = 'FINISHED'",
            "order_by": ["end_time DESC"],
            "max_results": 2,
        }

        def search() -> list[dict[str, Any]]:
            first = client.post(f"{MLFLOW}/runs/search", json=body).json()
            token = {"page_token": first["next_page_token"]}
            return [first, client.post(f"{MLFLOW}/runs/search", json=body | token).json()]

        with monkeypatch.context() as scan:  # the answer of reading every run
            scan.setattr(RunApi, "_candidates", lambda self, ws, conditions: self._all(ws))
            scanned = search()

        def no_listing(*args: object, **kwargs: object) -> None:
            raise AssertionError("a run_id search listed the workspace's jobs")

        monkeypatch.setattr(scripted.backend, "list_jobs", no_listing)
        looked_up = search()

    names = [run["info"]["run_id"] for page in looked_up for run in page["runs"]]
    assert names == ["run_29", "run_08", "run_04"]  # FINISHED only, latest end first
    assert looked_up == scanned
