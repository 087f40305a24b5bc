"""The local workspace runs pipeline jobs: component versions, a PipelineJob whose steps run
as real processes under the concurrency limit, the pipeline's status following its steps,
a cancel reaching them, and the steps shown with their parent as Azure ML shows them (ARM
``properties: null``, run history ``…/children``, MLflow ``mlflow.parentRunId``)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amlwait.core.jobs import JobRef
from amlwait.workspace import LocalWorkspace
from tests.workspace.helpers import (
    API_VERSION,
    WORKSPACE,
    arm_client,
    get,
    job_path,
    status_of,
    wait_for_status,
    wait_until,
)

V = {"api-version": API_VERSION}
HISTORY = f"/history/v1.0{WORKSPACE.arm_path}/runs"
MLFLOW = f"/mlflow/v1.0{WORKSPACE.arm_path}/api/2.0/mlflow"
TERMINAL = {"Completed", "Failed", "Canceled"}
FAIL = f"{sys.executable} -c \"import sys; sys.exit('error: circuit B has no data')\""


def component_path(name: str, version: str = "1") -> str:
    return f"{WORKSPACE.arm_path}/components/{name}/versions/{version}"


def put_component(client: httpx.Client, name: str, command: str) -> httpx.Response:
    body = {
        "properties": {
            "componentSpec": {
                "type": "command",
                "name": name,
                "version": "1",
                "command": command,
                "environment": "azureml:local-python:1",
                "inputs": {"circuit": {"type": "string"}},
            }
        }
    }
    return client.put(component_path(name), params=V, json=body)


def node(component: str, circuit: str) -> dict[str, Any]:
    """A node as azure-ai-ml's PipelineJob._to_rest_object writes one."""
    return {
        "type": "command",
        "name": circuit.lower(),
        "display_name": circuit,
        "tags": {"circuit": circuit},
        "environment_variables": {"CIRCUIT": circuit},
        "inputs": {"circuit": {"job_input_type": "literal", "value": circuit}},
        "componentId": "azureml:" + component_path(component),
        "_source": "CLASS",
    }


def put_pipeline(
    client: httpx.Client, name: str, nodes: dict[str, dict[str, Any]], *, keep_going: bool
) -> httpx.Response:
    body = {
        "properties": {
            "jobType": "Pipeline",
            "experimentName": "training",
            "tags": {"batch": name},
            "computeId": "cpu-cluster",
            "jobs": nodes,
            "settings": {"continue_on_step_failure": keep_going, "_source": "DSL"},
        }
    }
    return client.put(job_path(name), params=V, json=body)


def children(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    response = client.get(f"{HISTORY}/{name}/children")
    response.raise_for_status()
    value: list[dict[str, Any]] = response.json()["value"]
    return value


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path / "ws", max_concurrent=2, cancel_retry_after=0.05) as ws:
        yield ws


@pytest.fixture
def client(workspace: LocalWorkspace) -> Iterator[httpx.Client]:
    with arm_client(workspace.endpoint) as client:
        yield client


def test_a_component_version_is_registered_once_and_cannot_change(client: httpx.Client) -> None:
    created = put_component(client, "train", "echo ${{inputs.circuit}}")
    again = put_component(client, "train", "echo ${{inputs.circuit}}")
    changed = put_component(client, "train", "echo other")
    read = get(client, component_path("train"))
    missing = get(client, component_path("absent"))

    assert (created.status_code, again.status_code, changed.status_code) == (201, 200, 400)
    assert "cannot change" in changed.json()["error"]["message"]
    assert read.json()["id"] == component_path("train")
    assert read.json()["properties"]["componentSpec"]["command"] == "echo ${{inputs.circuit}}"
    assert read.json()["properties"]["provisioningState"] == "Succeeded"
    assert missing.status_code == 404


def test_every_step_runs_and_one_failure_fails_the_pipeline_after_the_others_end(
    client: httpx.Client, workspace: LocalWorkspace
) -> None:
    put_component(client, "train", "echo trained ${{inputs.circuit}} $CIRCUIT; sleep 0.3")
    put_component(client, "broken", FAIL)
    nodes = {
        "a": node("train", "A"),
        "b": node("broken", "B"),
        "c": node("train", "C"),
    }
    created = put_pipeline(client, "TRAINING_1", nodes, keep_going=True)
    assert created.status_code == 201, created.text
    assert created.json()["properties"]["jobType"] == "Pipeline"

    wait_for_status(client, "TRAINING_1", {"Running"}, timeout=10)
    final = wait_for_status(client, "TRAINING_1", TERMINAL, timeout=20)
    steps = children(client, "TRAINING_1")

    assert final == "Failed"
    by_name = {step["displayName"]: step for step in steps}
    assert {name: step["status"] for name, step in by_name.items()} == {
        "A": "Completed",
        "B": "Failed",
        "C": "Completed",
    }
    assert all(step["parentRunId"] == "TRAINING_1" for step in steps)
    assert by_name["A"]["properties"]["azureml.nodeid"] == "a"
    assert by_name["A"]["tags"] == {"circuit": "A"}
    assert "circuit B has no data" in by_name["B"]["error"]["error"]["message"]
    log = workspace.read_log(workspace.store.children_of(JobRef(WORKSPACE, "TRAINING_1"))[0].ref)
    assert log is not None and "trained A A" in log  # input and env var reached the step
    details = client.get(f"{HISTORY}/TRAINING_1/details").json()
    assert details["error"]["error"]["message"].startswith("Pipeline has some failed steps")


def test_steps_appear_as_azure_shows_them_arm_null_listed_under_their_parent(
    client: httpx.Client,
) -> None:
    put_component(client, "train", "echo ${{inputs.circuit}}")
    put_pipeline(client, "TRAINING_2", {"a": node("train", "A")}, keep_going=True)
    wait_for_status(client, "TRAINING_2", TERMINAL, timeout=20)
    step = children(client, "TRAINING_2")[0]

    child = get(client, job_path(step["runId"]))
    listed = get(client, f"{WORKSPACE.arm_path}/jobs", listViewType="All").json()["value"]
    experiment = client.get(
        f"{MLFLOW}/experiments/get-by-name", params={"experiment_name": "training"}
    ).json()["experiment"]["experiment_id"]
    found = client.post(
        f"{MLFLOW}/runs/search",
        json={
            "experiment_ids": [experiment],
            "filter": "tags.mlflow.parentRunId = 'TRAINING_2'",
        },
    ).json()["runs"]

    assert child.status_code == 200 and child.json()["properties"] is None
    assert [job["name"] for job in listed] == ["TRAINING_2"]
    assert [run["info"]["run_id"] for run in found] == [step["runId"]]
    assert {"key": "mlflow.parentRunId", "value": "TRAINING_2"} in found[0]["data"]["tags"]
    assert status_of(client, "TRAINING_2") == "Completed"


def test_without_continue_on_step_failure_a_failed_step_cancels_the_rest(
    client: httpx.Client,
) -> None:
    put_component(client, "slow", "sleep 30")
    put_component(client, "broken", FAIL)
    put_pipeline(
        client, "TRAINING_3", {"b": node("broken", "B"), "s": node("slow", "S")}, keep_going=False
    )

    final = wait_for_status(client, "TRAINING_3", TERMINAL, timeout=20)
    statuses = {step["displayName"]: step["status"] for step in children(client, "TRAINING_3")}

    assert final == "Failed"
    assert statuses == {"B": "Failed", "S": "Canceled"}


def test_a_cancel_of_the_pipeline_reaches_every_step(client: httpx.Client) -> None:
    put_component(client, "slow", "sleep 30")
    nodes = {n: node("slow", n.upper()) for n in ("a", "b", "c")}
    put_pipeline(client, "TRAINING_4", nodes, keep_going=True)
    wait_for_status(client, "TRAINING_4", {"Running"}, timeout=10)

    accepted = client.post(job_path("TRAINING_4") + "/cancel", params=V)
    final = wait_for_status(client, "TRAINING_4", TERMINAL, timeout=20)

    assert accepted.status_code == 202
    assert final == "Canceled"
    assert {step["status"] for step in children(client, "TRAINING_4")} == {"Canceled"}


def test_steps_run_under_the_concurrency_limit(tmp_path: Path) -> None:
    with (
        LocalWorkspace(tmp_path / "ws", max_concurrent=1) as workspace,
        arm_client(workspace.endpoint) as client,
    ):
        put_component(client, "train", "sleep 0.2")
        put_pipeline(
            client, "TRAINING_5", {n: node("train", n) for n in ("a", "b", "c")}, keep_going=True
        )
        wait_for_status(client, "TRAINING_5", TERMINAL, timeout=20)
        steps = children(client, "TRAINING_5")

    spans = sorted((s["startTimeUtc"], s["endTimeUtc"]) for s in steps)
    assert len(spans) == 3
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))


@pytest.mark.parametrize(
    ("nodes", "status", "words"),
    [
        ({"a": {"type": "command", "componentId": component_path("absent")}}, 404, "absent"),
        ({"A": {"type": "command", "componentId": component_path("train")}}, 400, "node name"),
        ({"a": {"type": "sweep", "componentId": component_path("train")}}, 400, "'sweep'"),
        ({}, 400, "at least one step"),
    ],
)
def test_a_pipeline_the_workspace_cannot_run_is_refused_and_nothing_is_stored(
    client: httpx.Client, nodes: dict[str, Any], status: int, words: str
) -> None:
    put_component(client, "train", "true")

    refused = put_pipeline(client, "TRAINING_BAD", nodes, keep_going=True)

    assert refused.status_code == status
    assert words in refused.json()["error"]["message"]
    assert get(client, job_path("TRAINING_BAD")).status_code == 404


def test_a_step_whose_command_cannot_be_prepared_is_refused_naming_the_node(
    client: httpx.Client,
) -> None:
    put_component(client, "train", "echo ${{inputs.missing}}")

    refused = put_pipeline(client, "TRAINING_6", {"a": node("train", "A")}, keep_going=True)

    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith("properties.jobs.a: ")
    assert get(client, job_path("TRAINING_6")).status_code == 404


def test_the_children_of_an_unknown_run_are_a_404(client: httpx.Client) -> None:
    put_component(client, "train", "true")
    put_pipeline(client, "TRAINING_7", {"a": node("train", "A")}, keep_going=True)

    assert wait_until(lambda: children(client, "TRAINING_7"), timeout=5)
    assert client.get(f"{HISTORY}/ABSENT/children").status_code == 404


def test_a_data_dir_of_schema_2_is_migrated_and_its_jobs_stay_top_level(tmp_path: Path) -> None:
    import sqlite3

    from amlwait.workspace.backend import ListQuery
    from amlwait.workspace.store import DATABASE_NAME, JobStore

    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '2');"
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, subscription TEXT NOT NULL,"
        " resource_group TEXT NOT NULL, workspace TEXT NOT NULL, name TEXT NOT NULL,"
        " properties TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,"
        " modified_at REAL NOT NULL, pid INTEGER, exit_code INTEGER, error TEXT,"
        " started_at REAL, ended_at REAL, error_code TEXT,"
        " UNIQUE (subscription, resource_group, workspace, name));"
        "INSERT INTO jobs (subscription, resource_group, workspace, name, properties, status,"
        f" created_at, modified_at) VALUES ('{WORKSPACE.subscription}', 'rg-1', 'ws-1', 'old',"
        " '{}', 'Queued',"
        " 1.0, 2.0);"
    )
    db.commit()
    db.close()

    store = JobStore(tmp_path)
    try:
        listed = store.list_jobs(WORKSPACE, ListQuery()).jobs
        runnable = store.jobs_in(["Queued"])
    finally:
        store.close()

    assert [(v.ref.name, v.parent) for v in listed] == [("old", None)]
    assert [job.ref.name for job in runnable] == ["old"]
