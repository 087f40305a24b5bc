"""amlwait's ARM conversion held against azure-ai-ml's own, and the SDK-backed source.

What the SDK leaves to ``jobs.create_or_update`` (it resolves them against the workspace
just before the PUT) cannot match our direct ARM values, so those are compared as the
same reference: ``code``/local input paths (SDK: the path as written, uploaded later;
ours: a file URI), ``compute`` (SDK: the bare name; ours: its ARM id) and
``environment`` (SDK: ``NAME@latest`` / ``NAME:VERSION``, resolved to a versioned ARM id
later; ours: ``azureml:NAME@latest`` as written). Known SDK quirks, not ours: it omits
empty maps we leave out, writes ``PT1H`` where we write ``PT3600S`` (the same
duration), and sends ``environment_variables`` values unconverted (``4``, where ARM
wants the string ``"4"``, as we send).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from amlwait.core.jobs import JobRef, JobSnapshot
from amlwait.errors import InputError, ServiceError
from amlwait.submit.command import build_batch
from amlwait.submit.plan import Batch
from amlwait.submit.submitter import Outcome, Submitter
from amlwait.submit.template import JobTemplate
from tests.helpers import WS
from tests.submit.helpers import write

pytest.importorskip(
    "azure.ai.ml",
    reason="azure-ai-ml is not installed (pip install -e '.[test]' or amlwait[azure])",
)

from azure.ai.ml.entities import Command, CommandJob
from azure.ai.ml.entities._job.to_rest_functions import to_rest_job_object
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from amlwait.submit.azure_sdk import (
    AzureMLSubmitSource,
    sdk_command_job,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_DATE = date(2025, 11, 1)


def examples_batch() -> tuple[JobTemplate, Batch]:
    job = EXAMPLES / "job.yml"
    batch = build_batch(EXAMPLES / "circuits.yaml", job, workspace=WS, run_date=RUN_DATE)
    return JobTemplate.load(job), batch


def sdk_properties(job: Any) -> dict[str, Any]:
    """The ARM ``properties`` azure-ai-ml would PUT, before it resolves assets."""
    properties: dict[str, Any] = to_rest_job_object(job).as_dict()["properties"]
    return properties


def assert_sdk_agrees(ours: dict[str, Any], sdk: dict[str, Any], folder: Path) -> None:
    def local(path: str) -> str:
        return (folder / path).resolve().as_uri()

    for key in ("jobType", "command", "experimentName", "displayName", "description", "tags"):
        assert sdk.get(key) == ours.get(key), key
    assert (sdk.get("properties") or {}) == ours.get("properties", {})
    assert {k: str(v) for k, v in (sdk.get("environmentVariables") or {}).items()} == ours.get(
        "environmentVariables", {}
    )
    if "codeId" in ours:
        assert local(sdk["codeId"]) == ours["codeId"]
    assert ours["environmentId"] == "azureml:" + sdk["environmentId"]
    assert ours["computeId"] == f"{WS.arm_path}/computes/{sdk['computeId']}"
    sdk_inputs = sdk.get("inputs") or {}
    assert sdk_inputs.keys() == ours.get("inputs", {}).keys()
    for name, mine in ours.get("inputs", {}).items():
        theirs = dict(sdk_inputs[name])
        if mine["jobInputType"] != "literal" and "://" not in theirs["uri"]:
            theirs["uri"] = local(theirs["uri"])
        assert theirs == mine, name
    assert (sdk.get("outputs") or {}) == ours.get("outputs", {})
    if "resources" in ours:
        assert {k: v for k, v in sdk["resources"].items() if v != {}} == ours["resources"]
    if "limits" in ours:
        assert sdk["limits"]["jobLimitsType"] == ours["limits"]["jobLimitsType"]


_TEMPLATE, _BATCH = examples_batch()


@pytest.mark.parametrize("planned", _BATCH.jobs, ids=lambda job: job.key)
def test_the_sdk_converts_each_example_circuit_as_we_do(planned: Any) -> None:
    job = sdk_command_job(_TEMPLATE, _BATCH, planned)

    sdk = sdk_properties(job)

    assert_sdk_agrees(dict(planned.properties), sdk, _TEMPLATE.folder)
    assert sdk["tags"] == {
        "project": "circuit-models",
        "plant": planned.circuit.plant,
        "circuit": planned.circuit.circuit,
        "date": "2025-11-01",
        _BATCH.tag: str(len(_BATCH.jobs)),
    }
    assert sdk["inputs"]["rows"] == {
        "jobInputType": "literal",
        "value": str(planned.circuit.params["rows"]),
    }


def test_the_sdk_job_keeps_our_upper_case_name() -> None:
    # load_job gives a Command node, whose name setter lower-cases; the manifest needs ours.
    # It stays a Command: jobs.create_or_update refuses a CommandJob ("Non supported job
    # type", azure-ai-ml 1.35; see test_sdk_reads_local_jobs for the real submission).
    planned = _BATCH.jobs[0]

    job = sdk_command_job(_TEMPLATE, _BATCH, planned)

    assert isinstance(job, Command)
    assert job.name == planned.base_name == "PLANT001_CIRCUIT01_2025_11_01"
    assert to_rest_job_object(job).as_dict()["name"] == planned.base_name


def test_the_sdk_converts_every_field_we_support_as_we_do(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('hi')\n")
    write(
        tmp_path / "job.yml",
        """\
        type: command
        command: python train.py ${{inputs.data}} ${{inputs.epochs}} {plant} {rows}
        code: src
        environment: azureml:train-env:3
        compute: azureml:cpu-cluster
        inputs:
          epochs: 10
          rate: 0.5
          flag: true
          data: {type: uri_folder, path: "./data/{plant}", mode: ro_mount}
          table: {type: uri_file, path: azureml://datastores/ws/paths/t.csv}
        outputs:
          model: {type: mlflow_model, mode: upload}
          report:
          named: {type: uri_folder, name: reports, version: "2", path: azureml://datastores/ws/paths/o/}
        environment_variables: {THREADS: 4}
        experiment_name: training
        display_name: "{plant} {circuit}"
        description: one circuit
        tags: {owner: data-team}
        properties: {stage: nightly}
        resources: {instance_count: 2, instance_type: Standard_DS3_v2, shm_size: 8g}
        limits: {timeout: 3600}
        """,
    )
    write(tmp_path / "circuits.yaml", "plants: {P1: {circuits: {C1: {rows: 5}}}}\n")
    batch = build_batch(
        tmp_path / "circuits.yaml", tmp_path / "job.yml", workspace=WS, run_date=RUN_DATE
    )
    template = JobTemplate.load(tmp_path / "job.yml")
    (planned,) = batch.jobs

    sdk = sdk_properties(sdk_command_job(template, batch, planned))

    assert_sdk_agrees(dict(planned.properties), sdk, tmp_path)
    assert sdk["limits"]["timeout"] == "PT1H"  # ours: PT3600S, the same duration
    assert sdk["displayName"] == "P1 C1"


def test_without_azure_ai_ml_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.ai.ml", None)

    with pytest.raises(InputError, match=r"install amlwait\[azure\]"):
        sdk_command_job(_TEMPLATE, _BATCH, _BATCH.jobs[0])


class FakeJobs:
    """``MLClient.jobs``: jobs by name; records what was created."""

    def __init__(self, existing: dict[str, str] | None = None) -> None:
        self.existing = dict(existing or {})
        self.created: list[Any] = []
        self.fail_with: Exception | None = None

    def get(self, name: str) -> Any:
        if name not in self.existing:
            raise ResourceNotFoundError(f"{name} not found")
        job = CommandJob(command="x", environment="azureml:e:1", name=name)
        job._status = self.existing[name]
        return job

    def create_or_update(self, job: Any) -> Any:
        if self.fail_with is not None:
            raise self.fail_with
        self.created.append(job)
        self.existing[job.name] = "Starting"
        job._status = "Starting"
        return job


class FakeMLClient:
    def __init__(self, jobs: FakeJobs) -> None:
        self.jobs = jobs


def sdk_source(jobs: FakeJobs) -> AzureMLSubmitSource:
    prepared = {job.base_name: sdk_command_job(_TEMPLATE, _BATCH, job) for job in _BATCH.jobs}
    return AzureMLSubmitSource(FakeMLClient(jobs), prepared)


def test_submitting_through_the_sdk_creates_each_missing_job_with_our_name_and_tags() -> None:
    first, second, *_ = _BATCH.jobs
    jobs = FakeJobs({first.base_name: "Completed"})

    results = asyncio.run(Submitter(sdk_source(jobs)).submit(_BATCH))

    assert [r.outcome for r in results] == [Outcome.EXISTS] + [Outcome.SUBMITTED] * (
        len(_BATCH.jobs) - 1
    )
    assert [job.name for job in jobs.created] == [job.base_name for job in _BATCH.jobs[1:]]
    assert jobs.created[0].tags == second.properties["tags"]


def test_a_failed_job_is_resubmitted_through_the_sdk_as_the_next_attempt() -> None:
    first = _BATCH.jobs[0]
    jobs = FakeJobs({job.base_name: "Completed" for job in _BATCH.jobs})
    jobs.existing[first.base_name] = "Failed"

    results = asyncio.run(Submitter(sdk_source(jobs), retry_failed=True).submit(_BATCH))

    assert (
        results[0].describe()
        == f"resubmitted as {first.base_name}_r2 ({first.base_name} was Failed)"
    )
    assert [job.name for job in jobs.created] == [f"{first.base_name}_r2"]
    assert jobs.created[0].tags == first.properties["tags"]


def test_a_refused_submission_is_reported_for_its_circuit() -> None:
    jobs = FakeJobs()
    jobs.fail_with = HttpResponseError("quota exceeded")
    source = sdk_source(jobs)
    ref = JobRef(WS, _BATCH.jobs[0].base_name)

    with pytest.raises(ServiceError, match="quota exceeded") as raised:
        asyncio.run(source.put_job(ref, _BATCH.jobs[0].properties))

    assert raised.value.job == ref.name


def test_get_job_reads_the_sdk_job_as_a_snapshot() -> None:
    source = sdk_source(FakeJobs({"A1": "Running"}))

    assert asyncio.run(source.get_job(JobRef(WS, "MISSING"))) is None
    snapshot = asyncio.run(source.get_job(JobRef(WS, "A1")))
    assert isinstance(snapshot, JobSnapshot)
    assert (snapshot.name, snapshot.status) == ("A1", "Running")
