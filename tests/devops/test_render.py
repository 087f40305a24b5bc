"""``amlwait render`` and ``amlwait matrix``: every kind of pipeline YAML is valid against
Microsoft's public schema (expanded where it holds template expressions), uses only the
documented inputs of each task, and keeps Azure DevOps' limits."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import amlwait
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.devops.cli import render as render_command
from amlwait.devops.pipelines import (
    KINDS,
    LEG_NAME_PATTERN,
    MAX_INPUT_CHARS,
    RenderOptions,
    leg_names,
    matrix_variable_lines,
    render,
    render_agent,
    render_matrix,
    render_template_file,
    render_webhook_matrix,
    service_headers,
    webhook_body,
)
from amlwait.devops.pipelines.install import parse_install
from amlwait.devops.yamltext import dump
from amlwait.errors import InputError

from .expand import expand_document

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / ".." / "shared" / "schemas" / "azure-pipelines.schema.json"
PIPELINE = REPO / ".azuredevops" / "build-pipeline.yml"
TEMPLATE = REPO / ".azuredevops" / "templates" / "wait-for-jobs.yml"

WS = WorkspaceRef("sub-1", "rg-1", "ws-1")
NAMES = ["PLANT001_CIRCUIT01_2025_11_01", "PLANT001_CIRCUIT02_2025_11_01", "plant-2-c3"]
JOBS = [JobRef(WS, name) for name in NAMES]
OPTIONS = RenderOptions(
    service_connection="azureml-arm",
    subscription="sub-1",
    resource_group="rg-1",
    workspace="ws-1",
)
# agent and webhook-matrix install amlwait: from an Azure Artifacts feed unless a test says
AGENT_OPTIONS = RenderOptions(**{**OPTIONS.__dict__, "feed": "amlwait"})
INSTALLING_KINDS = ("agent", "webhook-matrix", "pipeline")

# The inputs Microsoft documents for each task we use: name -> aliases, and the required
# ones (InvokeRESTAPI@1's connection input depends on connectionType; checked below).
DOCUMENTED_INPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "AzureMLJobWaitTask@1": {
        "serviceConnection": (),
        "resourceGroupName": (),
        "azureMLWorkspaceName": (),
        "azureMLJobName": (),
    },
    "InvokeRESTAPI@1": {
        "connectionType": ("connectedServiceNameSelector",),
        "serviceConnection": ("connectedServiceName", "genericService"),
        "azureServiceConnection": ("connectedServiceNameARM", "azureSubscription"),
        "azureDevOpsServiceConnection": ("connectedServiceNameAzureDevOps",),
        "method": (),
        "headers": (),
        "body": (),
        "urlSuffix": (),
        "waitForCompletion": (),
        "successCriteria": (),
    },
    "PipAuthenticate@1": {
        "azureDevOpsServiceConnection": ("workloadIdentityServiceConnection",),
        "feedUrl": (),
        "artifactFeeds": ("artifactFeeds",),
        "pythonDownloadServiceConnections": ("pythonDownloadServiceConnections",),
        "onlyAddExtraIndex": (),
    },
    "TwineAuthenticate@1": {
        "azureDevOpsServiceConnection": ("workloadIdentityServiceConnection",),
        "feedUrl": (),
        "artifactFeed": ("artifactFeed",),
        "pythonUploadServiceConnection": ("pythonUploadServiceConnection",),
    },
    "DownloadPipelineArtifact@2": {
        "buildType": ("source",),
        "project": (),
        "definition": ("pipeline",),
        "specificBuildWithTriggering": ("preferTriggeringPipeline",),
        "buildVersionToDownload": ("runVersion",),
        "branchName": ("runBranch",),
        "pipelineId": ("runId", "buildId"),
        "tags": (),
        "allowPartiallySucceededBuilds": (),
        "allowFailedBuilds": (),
        "artifactName": ("artifact",),
        "itemPattern": ("patterns",),
        "targetPath": ("path", "downloadPath"),
    },
    "AzureCLI@2": {
        "azureSubscription": ("connectedServiceNameARM",),
        "scriptType": (),
        "scriptLocation": (),
        "scriptPath": (),
        "inlineScript": (),
        "arguments": ("scriptArguments",),
        "powerShellErrorActionPreference": (),
        "addSpnToEnvironment": (),
        "useGlobalConfig": (),
        "workingDirectory": ("cwd",),
        "failOnStandardError": (),
        "powerShellIgnoreLASTEXITCODE": (),
        "visibleAzLogin": (),
        "keepAzSessionActive": (),
    },
    "PublishTestResults@2": {
        "testResultsFormat": ("testRunner",),
        "testResultsFiles": (),
        "searchFolder": (),
        "mergeTestResults": (),
        "failTaskOnFailedTests": (),
        "failTaskOnFailureToPublishResults": (),
        "failTaskOnMissingResultsFile": (),
        "testRunTitle": (),
        "buildPlatform": ("platform",),
        "buildConfiguration": ("configuration",),
        "publishRunAttachments": (),
    },
    "PublishPipelineArtifact@1": {
        "targetPath": ("path",),
        "artifact": ("artifactName",),
        "publishLocation": ("artifactType",),
        "fileSharePath": (),
        "parallel": (),
        "parallelCount": (),
        "properties": (),
    },
}
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "AzureMLJobWaitTask@1": (
        "serviceConnection",
        "resourceGroupName",
        "azureMLWorkspaceName",
        "azureMLJobName",
    ),
    "InvokeRESTAPI@1": ("connectionType", "method", "waitForCompletion"),
    "DownloadPipelineArtifact@2": (),
    "PipAuthenticate@1": (),
    "TwineAuthenticate@1": (),
    "AzureCLI@2": ("azureSubscription", "scriptType", "scriptLocation"),
    "PublishTestResults@2": ("testResultsFormat", "testResultsFiles"),
    "PublishPipelineArtifact@1": ("targetPath",),
}


# ----------------------------------------------------------------------------- helpers


def _accept_strings(schema: dict[str, Any]) -> None:
    """BaseLoader reads every scalar as a string, as Azure Pipelines does; the schema types
    a few task inputs as boolean or integer. Accept their string spellings too."""
    spellings = {"boolean": "^([Tt]rue|[Ff]alse)$", "integer": "^[0-9]+$"}
    task = schema["definitions"]["task"]
    places = [task["properties"]] + [
        branch["properties"]["inputs"].get("properties", {}) for branch in task["anyOf"]
    ]
    for properties in places:
        for name, rule in list(properties.items()):
            kind = rule.get("type")
            if kind in spellings:
                properties[name] = {
                    "anyOf": [{"type": kind}, {"type": "string", "pattern": spellings[kind]}]
                }


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft7Validator:
    if not SCHEMA_PATH.is_file():
        pytest.skip(
            f"Microsoft's pipeline schema is not at {SCHEMA_PATH.resolve()} "
            "(the repository's parent folder should hold shared/schemas/)"
        )
    schema = copy.deepcopy(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    _accept_strings(schema)
    # The marketplace task the schema does not know, with exactly its documented inputs.
    inputs = DOCUMENTED_INPUTS["AzureMLJobWaitTask@1"]
    schema["definitions"]["task"]["properties"]["task"]["anyOf"].append(
        {"enum": ["AzureMLJobWaitTask@1"]}
    )
    schema["definitions"]["task"]["anyOf"].append(
        {
            "properties": {
                "task": {"pattern": "^AzureMLJobWaitTask@1$"},
                "inputs": {
                    "type": "object",
                    "properties": {name: {"type": "string"} for name in inputs},
                    "additionalProperties": False,
                    "required": list(REQUIRED_INPUTS["AzureMLJobWaitTask@1"]),
                },
            },
            "required": ["task", "inputs"],
        }
    )
    return jsonschema.Draft7Validator(schema)


def load(text: str) -> dict[str, Any]:
    document = yaml.load(text, Loader=yaml.BaseLoader)
    assert isinstance(document, dict)
    return document


def all_jobs(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for stage in document.get("stages", [{"jobs": document.get("jobs", [])}]):
        yield from stage["jobs"]


def all_steps(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for job in all_jobs(document):
        yield from job.get("steps", [])


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The most specific of an anyOf's errors: the one that names the faulty field."""
    deepest, stack = error, [error]
    while stack:
        current = stack.pop()
        if len(current.absolute_path) > len(deepest.absolute_path):
            deepest = current
        stack.extend(current.context or [])
    return deepest


def check_pipeline(document: dict[str, Any]) -> None:
    """Schema-valid, only documented task inputs, every job with an explicit timeout."""
    errors = [_deepest(error) for error in _validator().iter_errors(document)]
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors)
    for job in all_jobs(document):
        assert int(job["timeoutInMinutes"]) > 0, job["job"]
        if job.get("pool") == "server":
            assert all("task" in step for step in job["steps"]), "server jobs run only tasks"
    for step in all_steps(document):
        if "task" in step:
            check_inputs(step["task"], step.get("inputs", {}))


def check_inputs(task: str, inputs: dict[str, str]) -> None:
    assert task in DOCUMENTED_INPUTS, f"no documented inputs recorded for {task}"
    documented = DOCUMENTED_INPUTS[task]
    known = {name for name, aliases in documented.items() for name in (name, *aliases)}
    assert set(inputs) <= known, f"{task}: undocumented inputs {set(inputs) - known}"
    required = list(REQUIRED_INPUTS[task])
    if task == "InvokeRESTAPI@1":
        required.append(
            "azureServiceConnection"
            if inputs["connectionType"] == "connectedServiceNameARM"
            else "serviceConnection"
        )
        for name in ("headers", "body"):
            assert len(inputs.get(name, "")) < MAX_INPUT_CHARS, f"{name} too long"
    if task == "AzureCLI@2" and inputs.get("scriptLocation") == "inlineScript":
        required.append("inlineScript")
    missing = [name for name in required if name not in inputs]
    assert not missing, f"{task}: missing required inputs {missing}"


def expand_template_usage(usage: str) -> dict[str, Any]:
    """The rendered usage file with templates/wait-for-jobs.yml expanded into it, the
    template read from the renderer (not the repository copy)."""
    document = load(usage)
    (item,) = document["jobs"]
    template = load(render_template_file())
    expanded = expand_document(template, item["parameters"], base=REPO)
    return {"jobs": expanded["jobs"]}


def rendered(kind: str, jobs: list[JobRef] | None = JOBS, **changes: Any) -> dict[str, str]:
    base = AGENT_OPTIONS if kind in INSTALLING_KINDS else OPTIONS
    options = RenderOptions(**{**base.__dict__, **changes})
    use_jobs = jobs if kind in ("matrix", "template") else None
    return {file.path: file.text for file in render(kind, options, jobs=use_jobs)}


def expanded(kind: str, **changes: Any) -> dict[str, Any]:
    files = rendered(kind, **changes)
    if kind == "template":
        return expand_template_usage(files["wait-for-training.yml"])
    (text,) = files.values()
    return load(text)


# ----------------------------------------------------------------------------- every kind


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_schema_valid_with_documented_inputs(kind: str) -> None:
    check_pipeline(expanded(kind))


def test_the_table_of_inputs_covers_what_the_schema_knows_of_each_task() -> None:
    schema = json.loads(SCHEMA_PATH.read_text()) if SCHEMA_PATH.is_file() else None
    if schema is None:
        pytest.skip("Microsoft's pipeline schema is absent")
    for branch in schema["definitions"]["task"]["anyOf"]:
        task = branch["properties"]["task"]["pattern"].strip("^$")
        if task in DOCUMENTED_INPUTS:
            ours = DOCUMENTED_INPUTS[task]
            theirs = branch["properties"]["inputs"]["properties"]
            for name, rule in theirs.items():
                assert name in ours, f"{task}.{name}"
                assert set(rule.get("aliases", [])) <= set(ours[name]), f"{task}.{name}"


def test_matrix_uses_the_real_wait_task_in_a_server_job() -> None:
    document = expanded("matrix")
    (job,) = document["jobs"]
    assert job["pool"] == "server"
    assert job["timeoutInMinutes"] == "2880"
    (step,) = job["steps"]
    assert step["task"] == "AzureMLJobWaitTask@1"
    assert step["inputs"]["azureMLJobName"] == "$(jobName)"
    legs = job["strategy"]["matrix"]
    assert [leg["jobName"] for leg in legs.values()] == NAMES
    assert all(LEG_NAME_PATTERN.match(name) for name in legs)


def test_template_expands_to_one_server_job_per_azure_ml_job() -> None:
    document = expanded("template")
    assert [job["steps"][0]["inputs"]["azureMLJobName"] for job in document["jobs"]] == NAMES
    assert [job["job"] for job in document["jobs"]][2] == "plant_2_c3"
    assert {job["pool"] for job in document["jobs"]} == {"server"}


def test_template_file_in_the_repository_is_the_rendered_one() -> None:
    assert TEMPLATE.read_text(encoding="utf-8") == render_template_file()


def test_template_defaults_the_job_id_for_hand_written_lists() -> None:
    template = load(render_template_file())
    parameters = {
        "serviceConnection": "c",
        "resourceGroup": "rg",
        "workspace": "ws",
        "jobs": [{"name": "a-b"}, {"name": "c", "workspace": "other"}],
    }
    jobs = expand_document(template, parameters, base=REPO)["jobs"]
    assert [job["job"] for job in jobs] == ["a_b", "c"]
    assert jobs[1]["steps"][0]["inputs"]["azureMLWorkspaceName"] == "other"
    check_pipeline({"jobs": jobs})


def test_agent_job_stops_amlwait_before_the_agent_is_killed() -> None:
    hosted = load(render_agent(AGENT_OPTIONS))
    (job,) = hosted["jobs"]
    script = next(s for s in job["steps"] if s.get("task") == "AzureCLI@2")["inputs"]
    assert job["timeoutInMinutes"] == "360"
    assert "--timeout 350m" in script["inlineScript"]
    for flag in ("--junit", "--summary", "--html", "--json", "--azure-devops"):
        assert flag in script["inlineScript"]
    assert "$(Pipeline.Workspace)/training_jobs/training_jobs.json" in script["inlineScript"]
    published = next(s for s in job["steps"] if s.get("task") == "PublishTestResults@2")
    assert published["condition"] == "always()"
    assert published["inputs"]["testResultsFormat"] == "JUnit"

    self_hosted = load(
        render_agent(
            RenderOptions(
                **{**AGENT_OPTIONS.__dict__, "agent": "self-hosted", "pool": "gpu-agents"}
            )
        )
    )
    (job,) = self_hosted["jobs"]
    assert job["pool"] == {"name": "gpu-agents"}
    assert job["timeoutInMinutes"] == "2880"
    check_pipeline(self_hosted)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timeout_minutes": 400}, "360"),
        ({"timeout_minutes": 0}, "explicitly"),
        ({"resource_group": None}, "-g/--resource-group"),
    ],
)
def test_agent_refuses_timeouts_the_agent_cannot_honour(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        render_agent(RenderOptions(**{**AGENT_OPTIONS.__dict__, **changes}))


def test_webhook_matrix_registers_the_documented_webhook_per_leg() -> None:
    document = expanded("webhook-matrix")
    generator, *waits = document["jobs"]
    assert generator["job"] == "Gen" and generator["pool"] == {"vmImage": "ubuntu-latest"}
    assert len(waits) == 4
    for index, job in enumerate(waits):
        assert job["pool"] == "server" and job["dependsOn"] == "Gen"
        assert job["strategy"]["matrix"] == f"$[ dependencies.Gen.outputs['split.legs_{index}'] ]"
        assert f"lt({index}, dependencies.Gen.outputs['split.legs_count'])" in job["condition"]
        (step,) = job["steps"]
        inputs = step["inputs"]
        assert step["task"] == "InvokeRESTAPI@1"
        assert inputs["connectionType"] == "connectedServiceNameARM"
        assert inputs["method"] == "PATCH" and inputs["waitForCompletion"] == "true"
        assert inputs["urlSuffix"].endswith("/jobs/$(jobName)?api-version=2024-04-01")
    body = json.loads(webhook_body())
    ((name, hook),) = body["Properties"]["NotificationSetting"]["Webhooks"].items()
    assert name == "ADO_Webhook_$(system.TimelineId)"
    assert hook["WebhookType"] == "AzureDevOps" and hook["EventType"] == "RunTerminated"
    assert hook["AuthToken"] == "$(system.AccessToken)"
    assert len(webhook_body()) < MAX_INPUT_CHARS
    assert "unverified" in rendered("webhook-matrix")["wait-webhook-matrix.yml"].split("jobs:")[0]


def test_service_posts_the_batch_with_the_callback_headers() -> None:
    (job,) = expanded("service")["jobs"]
    inputs = job["steps"][0]["inputs"]
    assert inputs["connectionType"] == "connectedServiceName"
    assert (inputs["method"], inputs["urlSuffix"]) == ("POST", "v1/waits")
    headers = json.loads(inputs["headers"])
    for name in (
        "PlanUrl",
        "ProjectId",
        "HubName",
        "PlanId",
        "JobId",
        "TimelineId",
        "TaskInstanceId",
        "AuthToken",
    ):
        assert name in headers
    assert headers["X-Amlwait-Key"] == "$(AMLWAIT_SERVICE_KEY)"
    body = json.loads(inputs["body"].replace("$(expectedJobs)", "3"))
    assert body["tag"] == "$(batchTag)" and body["timeout"] == "48h"
    assert body["failFast"] is False and body["cancelRemaining"] is False
    assert job["variables"]["batchTag"].startswith("$[ stageDependencies.Training.Submit")


def test_service_takes_tag_and_count_from_a_manifest() -> None:
    (file,) = render("service", OPTIONS, jobs=JOBS, tag="batch-7")
    (job,) = load(file.text)["jobs"]
    body = json.loads(job["steps"][0]["inputs"]["body"])
    assert (body["tag"], body["expectedJobs"]) == ("batch-7", 3)
    assert "variables" not in job


# ----------------------------------------------------------------------------- limits


def test_leg_names_are_valid_unique_and_stable() -> None:
    other = WorkspaceRef("sub-1", "rg-1", "ws-2")
    names = ["a-b", "a_b", "A_B", "0start", "x" * 255, "x" * 254 + "y", "same"]
    jobs = [JobRef(WS, name) for name in names] + [JobRef(other, "same")]
    legs = leg_names(jobs)
    assert all(LEG_NAME_PATTERN.match(leg) for leg in legs)
    assert len({leg.lower() for leg in legs}) == len(legs)
    assert legs[0] == "a_b" and legs[3] == "job_0start"
    assert legs == leg_names(jobs)


def test_more_than_256_jobs_are_split_over_several_server_jobs() -> None:
    jobs = [JobRef(WS, f"job-{index:04d}") for index in range(600)]
    document = load(render_matrix(jobs, OPTIONS))
    sizes = [len(job["strategy"]["matrix"]) for job in document["jobs"]]
    assert sizes == [256, 256, 88]
    check_pipeline(document)


def test_matrix_refuses_jobs_in_several_subscriptions() -> None:
    jobs = [*JOBS, JobRef(WorkspaceRef("sub-2", "rg", "ws"), "elsewhere")]
    with pytest.raises(InputError, match="subscriptions"):
        render_matrix(jobs, OPTIONS)


def test_webhook_matrix_refuses_more_jobs_than_its_chunks_hold() -> None:
    jobs = [JobRef(WS, f"job-{index}") for index in range(5)]
    options = RenderOptions(**{**OPTIONS.__dict__, "max_legs": 2, "max_chunks": 2})
    with pytest.raises(InputError, match="--max-chunks"):
        render_webhook_matrix(options, jobs)


def test_matrix_lines_escape_odd_values_and_parse_back() -> None:
    odd = WorkspaceRef("sub-1", "rg-(50%);x]", "ws-1")
    jobs = [JobRef(odd, "a-1"), JobRef(odd, "a_1"), JobRef(WS, "b")]
    lines = matrix_variable_lines(jobs, max_legs=2)
    assert len(lines) == 3
    legs = {}
    for line in lines[:2]:
        assert line.startswith("##vso[task.setvariable variable=legs_")
        assert ";isoutput=true]" in line and "\n" not in line
        legs.update(json.loads(line.split("]", 1)[1].replace("%AZP25", "%")))
    assert legs["a_1"]["resourceGroup"] == "rg-(50%);x]"
    assert legs["a_1_" + next(k for k in legs if k.startswith("a_1_"))[4:]]["jobName"] == "a_1"
    assert lines[2].endswith("]2")


@given(st.text(max_size=40))
def test_any_string_survives_the_yaml_writer(text: str) -> None:
    written = dump({"value": text, "list": [text]})
    assert yaml.safe_load(written) == {"value": text, "list": [text]}
    assert yaml.load(written, Loader=yaml.BaseLoader) == {"value": text, "list": [text]}


# ----------------------------------------------------------------------------- the pipeline


@pytest.mark.parametrize(
    "mode", ["agent", "matrix", "template", "webhook-matrix", "service", "pipeline"]
)
def test_build_pipeline_is_valid_for_every_wait_mode(mode: str) -> None:
    document = load(PIPELINE.read_text(encoding="utf-8"))
    declared = {p["name"]: p for p in document["parameters"]}
    assert declared["waitMode"]["default"] == "agent"
    assert mode in declared["waitMode"]["values"]
    result = expand_document(document, {"waitMode": mode}, base=PIPELINE.parent)
    check_pipeline(result)
    training, waiting = result["stages"]
    assert waiting["dependsOn"] == "Training"
    steps = training["jobs"][0]["steps"]
    submit = next(s for s in steps if s.get("task") == "AzureCLI@2")["inputs"]["inlineScript"]
    assert "amlwait submit --circuits circuits.yaml --job job.yml" in submit
    assert '--output "$(Build.ArtifactStagingDirectory)/training_jobs.json"' in submit
    assert any(s.get("name") == "meta" for s in steps)
    wait_steps = [s for job in waiting["jobs"] for s in job["steps"]]
    for step in wait_steps:
        if step.get("task") == "InvokeRESTAPI@1" and step["inputs"]["method"] == "PATCH":
            assert step["inputs"]["body"] == webhook_body()
        if step.get("task") == "InvokeRESTAPI@1" and step["inputs"]["method"] == "POST":
            assert step["inputs"]["headers"] == service_headers()
    if mode == "webhook-matrix":
        assert [job["job"] for job in waiting["jobs"]] == ["Gen", *(f"Wait_{i}" for i in range(4))]
        assert "--max-chunks 4" in waiting["jobs"][0]["steps"][-1]["script"]


# ----------------------------------------------------------------------------- the commands


def run_amlwait(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "AMLWAIT"))}
    return subprocess.run(
        [sys.executable, "-m", "amlwait", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def test_matrix_command_prints_setvariable_lines(tmp_path: Path) -> None:
    manifest = tmp_path / "training_jobs.json"
    manifest.write_text(json.dumps({"jobs": ["a-1", "a_1", "b", "c", "d"]}))
    done = run_amlwait(
        "matrix",
        str(manifest),
        "--max-legs",
        "2",
        "--subscription",
        "s",
        "-g",
        "50%-rg",
        "-w",
        "ws",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    chunks = [json.loads(line.split("]", 1)[1].replace("%AZP25", "%")) for line in lines[:3]]
    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    assert chunks[0]["a_1"] == {
        "jobName": "a-1",
        "subscription": "s",
        "resourceGroup": "50%-rg",
        "workspace": "ws",
    }
    assert lines[3] == "##vso[task.setvariable variable=legs_count;isoutput=true]3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["render", "nonsense", "--service-connection", "c"], "unknown KIND 'nonsense'"),
        (["render", "matrix", "--jobs", "a,b"], "--service-connection"),
        (["render", "template", "--service-connection", "c", "-g", "rg"], "--manifest"),
        (
            [
                "render",
                "webhook-matrix",
                "--service-connection",
                "c",
                "--subscription",
                "s",
                "-g",
                "rg",
                "-w",
                "ws",
                "--jobs",
                "a,b,c",
            ],
            "render webhook-matrix takes no job list",
        ),
        # said before the list is parsed (which would complain of no subscription first)
        (["render", "agent", "--service-connection", "c", "--jobs", "a,b"], "takes no job list"),
        (["render", "agent", "--service-connection", "c", "-g", "g", "-w", "w"], "not on PyPI"),
        (
            [
                "render",
                "agent",
                "--service-connection",
                "c",
                "-g",
                "g",
                "-w",
                "w",
                "--feed",
                "f",
                "--install",
                "amlwait>=1",
            ],
            "not pinned",
        ),
        (
            ["render", "matrix", "--service-connection", "c", "--jobs", "a", "--feed", "f"],
            "render matrix runs no agent step, so it installs nothing: leave out --feed",
        ),
        (
            ["render", "service", "--service-connection", "c", "--manifest", "multi.json"],
            "the jobs span 2 workspaces (s/g/w1, s/g/w2), but the amlwait service waits for "
            "one workspace per call: render one file per workspace",
        ),
        (
            [
                "matrix",
                "m.json",
                "--max-legs",
                "1",
                "--max-chunks",
                "1",
                "--subscription",
                "s",
                "-g",
                "rg",
                "-w",
                "ws",
            ],
            "--max-chunks 2",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps({"jobs": ["a", "b"]}))
    entries = [
        {"name": f"j{i}", "subscription": "s", "resource_group": "g", "workspace": f"w{i}"}
        for i in (1, 2)
    ]
    (tmp_path / "multi.json").write_text(json.dumps({"jobs": entries, "tag": "t"}))
    done = run_amlwait(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr


def test_template_output_dir_receives_both_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        render_command,
        [
            "template",
            "--jobs",
            "a-1,b",
            "--service-connection",
            "c",
            "-g",
            "rg",
            "-w",
            "ws",
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    usage = (tmp_path / "out" / "wait-for-training.yml").read_text()
    assert (tmp_path / "out" / "templates" / "wait-for-jobs.yml").read_text() == (
        render_template_file()
    )
    check_pipeline(expand_template_usage(usage))


def test_template_on_stdout_is_two_yaml_documents() -> None:
    result = CliRunner().invoke(
        render_command,
        ["template", "--jobs", "a", "--service-connection", "c", "-g", "rg", "-w", "ws"],
    )
    assert result.exit_code == 0, result.output
    documents = list(yaml.load_all(result.output, Loader=yaml.BaseLoader))
    assert [sorted(d) for d in documents] == [["jobs", "parameters"], ["jobs"]]
    assert "# file: templates/wait-for-jobs.yml" in result.output


WHEEL = "$(Pipeline.Workspace)/amlwait-wheel/amlwait-0.1.0-py3-none-any.whl"


@pytest.mark.parametrize(
    "install",
    [
        {"feed": "amlwait"},
        {"feed": None, "index_url": "https://pkgs.example/simple/", "install": "amlwait==0.1.0"},
        {"feed": None, "install": WHEEL},
        {"feed": None, "install": "git+https://dev.azure.com/o/p/_git/amlwait@v0.1.0"},
    ],
    ids=["feed", "index-url", "wheel-artifact", "git"],
)
@pytest.mark.parametrize("kind", ["agent", "webhook-matrix"])
def test_every_install_source_renders_schema_valid_and_pinned(
    kind: str, install: dict[str, Any]
) -> None:
    pipeline = expanded(kind, **install)
    check_pipeline(pipeline)
    steps = [step for job in pipeline["jobs"] for step in job.get("steps", [])]
    (script,) = [s["script"] for s in steps if "pip install --quiet" in s.get("script", "")]
    assert not re.search(r"pip install --quiet[^\n]* amlwait\s*$", script, re.MULTILINE)
    expected = install.get("install") or f"amlwait=={amlwait.__version__}"
    assert expected in script
    tasks = [step.get("task") for step in steps]
    assert ("PipAuthenticate@1" in tasks) == (install.get("feed") is not None)
    assert tasks.count("DownloadPipelineArtifact@2") == (
        2 if install.get("install") == WHEEL else 1
    )


def test_the_repository_pipeline_installs_this_version_from_its_feed_only() -> None:
    text = PIPELINE.read_text(encoding="utf-8")
    variables = yaml.safe_load(text)["variables"]
    installs = re.findall(r"-m pip install --quiet (\S+)$", text, re.MULTILINE)
    assert installs == ['"amlwait==$(amlwaitVersion)"'] * 4  # training, agent, gen, report
    assert variables["amlwaitVersion"] == amlwait.__version__
    parse_install(f"amlwait=={variables['amlwaitVersion']}", feed=variables["amlwaitFeed"])
    assert text.count("task: PipAuthenticate@1") == 4


def test_counts_agree_with_their_nouns(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps({"jobs": ["a"]}))
    done = run_amlwait(
        "matrix", "one.json", "--subscription", "s", "-g", "g", "-w", "w", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "1 job in 1 matrix of at most 256 legs"
