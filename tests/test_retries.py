"""``amlwait wait --retries``: a Failed job is resubmitted from its own definition."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from amlwait.core.clock import VirtualClock
from amlwait.core.tracker import BatchOutcome, JobRetried
from amlwait.result import WaitResult
from amlwait.testing import FakeJobSource
from amlwait.waiter import WaitOptions, wait_for_jobs
from tests.helpers import WS, amlwait


def run(
    source: FakeJobSource, clock: VirtualClock, retries: int, **kwargs: Any
) -> tuple[WaitResult, list[Any]]:
    events: list[Any] = []
    result = asyncio.run(
        wait_for_jobs(
            source.refs(),
            source=source,
            clock=clock,
            listener=events.append,
            options=WaitOptions(retries=retries, **kwargs),
        )
    )
    return result, events


def test_a_failed_job_is_retried_and_the_batch_succeeds() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("TRAIN", [(0, "Running"), (600, "Failed")], tags={"batch": ""})
    source.add_job("OTHER", [(0, "Running"), (900, "Completed")])
    source.on_resubmit("TRAIN_r2", [(0, "Queued"), (300, "Running"), (900, "Completed")])
    result, events = run(source, clock, retries=2)
    assert result.outcome is BatchOutcome.SUCCEEDED
    assert source.submitted == ["TRAIN_r2"]
    attempts = {job.name: (job.attempt, job.outcome.value) for job in result.jobs}
    assert attempts == {
        "TRAIN": (1, "retried"),
        "TRAIN_r2": (2, "succeeded"),
        "OTHER": (1, "succeeded"),
    }
    retried = [e for e in events if isinstance(e, JobRetried)]
    assert [(e.old.name, e.new.name) for e in retried] == [("TRAIN", "TRAIN_r2")]
    document = result.to_json()
    first = next(j for j in document["jobs"] if j["name"] == "TRAIN")
    assert first["retried_as"] == "TRAIN_r2" and first["status"] == "Failed"


def test_retries_run_out_and_the_batch_fails() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("TRAIN", [(0, "Failed")])
    source.on_resubmit("TRAIN_r2", [(0, "Running"), (60, "Failed")])
    result, _ = run(source, clock, retries=1)
    assert result.outcome is BatchOutcome.FAILED
    assert source.submitted == ["TRAIN_r2"]
    assert [j.name for j in result.jobs if j.current] == ["TRAIN_r2"]


def test_a_canceled_job_is_never_retried() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("TRAIN", [(0, "Canceled")])
    result, _ = run(source, clock, retries=3)
    assert result.outcome is BatchOutcome.FAILED
    assert source.submitted == []


def test_fail_fast_waits_for_the_retry_instead_of_stopping() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("TRAIN", [(0, "Failed")])
    source.add_job("OTHER", [(0, "Running"), (1200, "Completed")])
    result, _ = run(source, clock, retries=1, fail_fast=True)
    assert result.outcome is BatchOutcome.SUCCEEDED


def test_wait_retries_a_flaky_job_on_the_local_workspace(tmp_path: Path) -> None:
    from amlwait.workspace import LocalWorkspace

    marker = tmp_path / "failed-once"
    flaky = (
        f"{shlex.quote(sys.executable)} -c "
        + shlex.quote(
            "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
            "sys.exit(0) if p.exists() else (p.touch(), sys.exit(2))"
        )
        + f" {shlex.quote(str(marker))}"
    )
    ws = WS.arm_path
    with LocalWorkspace(tmp_path / "data") as workspace:
        import httpx

        with httpx.Client(
            base_url=workspace.endpoint, headers={"Authorization": "Bearer x"}
        ) as client:
            for name, command in (("FLAKY", flaky), ("STEADY", "true")):
                body = {
                    "properties": {
                        "jobType": "Command",
                        "command": command,
                        "environmentId": "azureml:local@latest",
                        "tags": {"batch-1": "", "plant": "P1"},
                    }
                }
                client.put(
                    f"{ws}/jobs/{name}", params={"api-version": "2025-12-01"}, json=body
                ).raise_for_status()
            manifest = tmp_path / "training_jobs.json"
            manifest.write_text(json.dumps({"jobs": ["FLAKY", "STEADY"], "tag": "batch-1"}))
            result = amlwait(
                "wait",
                str(manifest),
                "--retries",
                "1",
                "--update-manifest",
                str(manifest),
                "--poll-interval",
                "0.1s",
                "--max-poll-interval",
                "0.3s",
                "--json",
                str(tmp_path / "r.json"),
                endpoint=workspace.endpoint,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            assert "FLAKY  Failed -> retried as FLAKY_r2 (retry 1 of this wait)" in result.stdout
            assert json.loads(manifest.read_text()) == {
                "jobs": ["FLAKY_r2", "STEADY"],
                "tag": "batch-1",
            }
            retry = client.get(f"{ws}/jobs/FLAKY_r2", params={"api-version": "2025-12-01"})
            assert retry.json()["properties"]["tags"] == {"batch-1": "", "plant": "P1"}
            assert retry.json()["properties"]["command"] == flaky
    document = json.loads((tmp_path / "r.json").read_text())
    assert [(j["name"], j["outcome"], j["attempt"]) for j in document["jobs"]] == [
        ("FLAKY", "retried", 1),
        ("STEADY", "succeeded", 1),
        ("FLAKY_r2", "succeeded", 2),
    ]


def test_a_manifest_naming_a_second_attempt_retries_as_the_third() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("TRAIN_r2", [(0, "Failed")])
    result, _ = run(source, clock, retries=1)
    assert source.submitted == ["TRAIN_r3"]
    assert [j.name for j in result.jobs] == ["TRAIN_r2", "TRAIN_r3"]
