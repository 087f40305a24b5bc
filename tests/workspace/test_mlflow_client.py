"""The real MLflow client, unmodified, reads the local workspace's jobs through the
``mlFlowTrackingUri`` its workspace resource advertises (MLflow's second opinion)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from amlwait.workspace import LocalWorkspace
from tests.workspace.helpers import API_VERSION, WORKSPACE, arm_client, put_job, wait_for_status

mlflow_tracking = pytest.importorskip("mlflow.tracking", reason="mlflow-skinny (test extra)")

FAILING = (
    f'{sys.executable} -c "import sys, time; time.sleep(0.3); '
    "sys.exit('error: sensor table plant002_c01_missing does not exist')\""
)
TERMINAL = {"Completed", "Failed", "Canceled"}


def test_mlflow_client_reads_status_and_true_times_of_local_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "local-token")
    with (
        LocalWorkspace(tmp_path / "ws", token="local-token") as local,
        arm_client(local.endpoint, token="local-token") as client,
    ):
        submitted = time.time()
        put_job(client, "train_ok", command="sleep 0.3", tags={"batch": "b1"})
        put_job(client, "train_bad", command=FAILING, tags={"batch": "b1"})
        put_job(client, "train_elsewhere", command="true", tags={"batch": "b2"})
        for name in ("train_ok", "train_bad", "train_elsewhere"):
            wait_for_status(client, name, TERMINAL, timeout=20)
        finished = time.time()
        uri = client.get(WORKSPACE.arm_path, params={"api-version": API_VERSION}).json()[
            "properties"
        ]["mlFlowTrackingUri"]

        mlflow = mlflow_tracking.MlflowClient(tracking_uri=uri)
        bad = mlflow.get_run("train_bad")
        ok = mlflow.get_run("train_ok")
        experiment = mlflow.get_experiment_by_name("Default")
        assert experiment is not None
        batch = mlflow.search_runs([experiment.experiment_id], filter_string="tags.batch = 'b1'")
        by_id = mlflow.search_runs(
            [experiment.experiment_id],
            filter_string="attributes.run_id IN ('train_ok', 'train_elsewhere')",
            max_results=1,
            order_by=["start_time ASC"],
        )

    assert (bad.info.status, ok.info.status) == ("FAILED", "FINISHED")
    for run in (bad, ok):
        assert submitted * 1000 <= run.info.start_time <= run.info.end_time <= finished * 1000
    assert ok.info.end_time - ok.info.start_time >= 250  # it really ran for 0.3 s
    assert bad.data.tags["batch"] == "b1"
    assert sorted(r.info.run_id for r in batch) == ["train_bad", "train_ok"]
    assert len(by_id) == 1 and by_id.token  # one page of two, and a token for the next
