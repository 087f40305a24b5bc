"""``amlwait render pipeline``: one AzureMLJobWaitTask@1 in a server job on the pipeline job
(static or from the training stage's output variable), then the optional report job;
schema-valid with the task's documented inputs."""

from __future__ import annotations

from typing import Any

import pytest

from amlwait.core.jobs import JobRef
from amlwait.devops.pipelines import RenderOptions, render
from amlwait.errors import InputError
from tests.devops.test_render import AGENT_OPTIONS, WS, check_pipeline, load


def _render(jobs: list[JobRef] | None = None, **changes: Any) -> dict[str, Any]:
    options = RenderOptions(**{**AGENT_OPTIONS.__dict__, **changes})
    (file,) = render("pipeline", options, jobs=jobs)
    assert file.path == "wait-pipeline.yml"
    return load(file.text)


def test_the_wait_is_one_server_job_on_the_run_time_pipeline_name() -> None:
    document = _render()
    check_pipeline(document)

    wait, report = document["jobs"]
    assert wait["pool"] == "server" and wait["timeoutInMinutes"] == "2880"
    assert wait["variables"] == {
        "pipelineJob": "$[ stageDependencies.Training.Submit.outputs['meta.pipelineJob'] ]"
    }
    (task,) = wait["steps"]
    assert task["task"] == "AzureMLJobWaitTask@1"
    assert task["inputs"] == {
        "serviceConnection": "azureml-arm",
        "resourceGroupName": "rg-1",
        "azureMLWorkspaceName": "ws-1",
        "azureMLJobName": "$(pipelineJob)",
    }
    assert report["dependsOn"] == "WaitForPipeline" and report["condition"] == "always()"
    assert int(report["timeoutInMinutes"]) <= 15
    script = next(s for s in report["steps"] if s.get("task") == "AzureCLI@2")["inputs"]
    assert (
        'amlwait report "$(Pipeline.Workspace)/training_jobs/training_jobs.json"'
        in (script["inlineScript"])
    )
    published = next(s for s in report["steps"] if s.get("task") == "PublishTestResults@2")
    assert published["inputs"]["testResultsFiles"].endswith("/junit.xml")


def test_a_named_pipeline_job_is_waited_for_statically() -> None:
    document = _render([JobRef(WS, "TRAINING_2025_11_01")], report=False, feed=None)
    check_pipeline(document)

    (wait,) = document["jobs"]
    assert "variables" not in wait
    assert wait["steps"][0]["inputs"]["azureMLJobName"] == "TRAINING_2025_11_01"


@pytest.mark.parametrize(
    ("changes", "jobs", "words"),
    [
        ({}, [JobRef(WS, "A"), JobRef(WS, "B")], "waits for ONE pipeline job"),
        ({"timeout_minutes": 3000}, None, "must be 1 to 2880"),
        ({"training_outputs": "Training.meta"}, None, "give STAGE.JOB.STEP"),
        ({"resource_group": None}, None, "needs -g/--resource-group"),
        ({"report": False, "feed": "amlwait"}, None, "--no-report runs no agent step"),
    ],
)
def test_bad_input_is_one_line(
    changes: dict[str, Any], jobs: list[JobRef] | None, words: str
) -> None:
    with pytest.raises(InputError, match=words):
        _render(jobs, **changes)
