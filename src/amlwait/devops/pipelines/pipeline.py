"""The ``pipeline`` route: ONE ``AzureMLJobWaitTask@1`` in a ``pool: server`` job on the
pipeline job ``amlwait submit --as-pipeline`` created, then (unless ``--no-report``) a
seconds-long agent job running ``amlwait report`` for the per-circuit test results.

Agentless while training runs (server jobs hold no agent and no parallel job), dynamic (the
steps were decided at submit time; the wait needs only the pipeline job's name) and with no
infrastructure of ours: Azure ML completes the task itself when the pipeline job ends, and
its status (Completed only if every step completed, with ``continue_on_step_failure``)
passes or fails the task. Limits: the task's documented two days (2,880 minutes).

The job name is static when a job list names it (``--manifest`` of the pipeline form, or
``--jobs NAME``: exactly one job), else read at run time from the training stage's output
variable ``pipelineJob`` (``--training-outputs STAGE.JOB.STEP``, default
``Training.Submit.meta``) through a job variable ``$[ stageDependencies… ]``.

The report job: ``dependsOn`` the server job, ``condition: always()`` (it reports a failed
pipeline too), downloads the manifest artifact, installs amlwait (pinned, as the ``agent``
route), runs ``amlwait report`` (reads once; no waiting) under ``AzureCLI@2``'s login and
publishes the JUnit file with ``PublishTestResults@2`` and the reports as an artifact.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from amlwait.core.jobs import JobRef
from amlwait.devops.pipelines.base import (
    MANIFEST_PATH,
    WAIT_TASK,
    WAIT_TASK_SUBSCRIPTION,
    PipelineRoute,
    RenderedFile,
    RenderOptions,
    download_step,
    require,
    wait_task_timeout,
)
from amlwait.devops.pipelines.install import install_steps_for
from amlwait.devops.yamltext import Commented, Node, dump
from amlwait.errors import InputError

WAIT_JOB = "WaitForPipeline"
REPORT_JOB = "ReportPipeline"
REPORT_MINUTES = 15
REPORT_DIR = "$(Build.ArtifactStagingDirectory)/amlwait"
PIPELINE_VARIABLE = "pipelineJob"


def _job_name(options: RenderOptions, jobs: Sequence[JobRef] | None) -> tuple[str, Node | None]:
    """The task's ``azureMLJobName`` and the server job's variables (``None``: static)."""
    if jobs is not None:
        if len(jobs) != 1:
            raise InputError(
                f"render pipeline waits for ONE pipeline job, but the job list has {len(jobs)}; "
                "give the manifest `submit --as-pipeline` wrote, or --jobs NAME"
            )
        return jobs[0].name, None
    parts = options.training_outputs.split(".")
    if len(parts) != 3 or not all(parts):
        raise InputError(
            f"--training-outputs {options.training_outputs!r}: give STAGE.JOB.STEP, the step "
            f"that sets the output variable {PIPELINE_VARIABLE}"
        )
    stage, job, step = parts
    source = f"$[ stageDependencies.{stage}.{job}.outputs['{step}.{PIPELINE_VARIABLE}'] ]"
    return f"$({PIPELINE_VARIABLE})", {PIPELINE_VARIABLE: source}


def _report_script(options: RenderOptions, resource_group: str, workspace: str) -> str:
    subscription = (
        shlex.quote(options.subscription)
        if options.subscription
        else '"$(az account show --query id --output tsv)"'
    )
    return (
        f'mkdir -p "{REPORT_DIR}"\n'
        f'amlwait report "{MANIFEST_PATH}" \\\n'
        f"  --subscription {subscription} \\\n"
        f"  --resource-group {shlex.quote(resource_group)} \\\n"
        f"  --workspace-name {shlex.quote(workspace)} \\\n"
        "  --azure-devops \\\n"
        f'  --junit "{REPORT_DIR}/junit.xml" \\\n'
        f'  --summary "{REPORT_DIR}/summary.md" \\\n'
        f'  --html "{REPORT_DIR}/report.html" \\\n'
        f'  --json "{REPORT_DIR}/result.json"\n'
    )


def _report_job(options: RenderOptions, resource_group: str, workspace: str) -> Node:
    return {
        "job": REPORT_JOB,
        "displayName": "Report each circuit of the pipeline job (amlwait report)",
        "dependsOn": WAIT_JOB,
        "condition": "always()",
        "pool": {"vmImage": "ubuntu-latest"},
        "timeoutInMinutes": Commented(REPORT_MINUTES, "reads once: seconds, not hours"),
        "steps": [
            {"checkout": "none"},
            download_step(),
            *install_steps_for(options.install, options.feed, options.index_url),
            {
                "task": "AzureCLI@2",
                "displayName": "Report the pipeline job's steps",
                "inputs": {
                    "azureSubscription": options.service_connection,
                    "scriptType": "bash",
                    "scriptLocation": "inlineScript",
                    "inlineScript": _report_script(options, resource_group, workspace),
                },
            },
            {
                "task": "PublishTestResults@2",
                "displayName": "Publish the circuits as test results",
                "condition": "always()",
                "inputs": {
                    "testResultsFormat": "JUnit",
                    "testResultsFiles": f"{REPORT_DIR}/junit.xml",
                    "testRunTitle": "Azure ML pipeline steps",
                },
            },
            {
                "task": "PublishPipelineArtifact@1",
                "displayName": "Publish the report",
                "condition": "always()",
                "inputs": {
                    "targetPath": REPORT_DIR,
                    "artifact": "amlwait-report-$(System.JobAttempt)",
                },
            },
        ],
    }


def render_pipeline(options: RenderOptions, jobs: Sequence[JobRef] | None) -> str:
    """The server job waiting for the pipeline job, then the optional report job."""
    kind = "pipeline"
    resource_group = require(
        options.resource_group, "-g/--resource-group", kind, "the pipeline job's resource group"
    )
    workspace = require(
        options.workspace, "-w/--workspace-name", kind, "the pipeline job's workspace"
    )
    timeout = wait_task_timeout(options)
    name, variables = _job_name(options, jobs)
    wait: dict[str, Node] = {
        "job": WAIT_JOB,
        "displayName": "Wait for the Azure ML pipeline job (agentless)",
        "pool": "server",
        "timeoutInMinutes": Commented(timeout, "the task's documented maximum: 2 days"),
    }
    if variables is not None:
        wait["variables"] = variables
    wait["steps"] = [
        {
            "task": WAIT_TASK,
            "displayName": f"Wait for {name}",
            "inputs": {
                "serviceConnection": options.service_connection,
                "resourceGroupName": resource_group,
                "azureMLWorkspaceName": workspace,
                "azureMLJobName": name,
            },
        }
    ]
    rendered: list[Node] = [wait]
    if options.report:
        rendered.append(_report_job(options, resource_group, workspace))
    source = "static" if variables is None else f"read at run time ({options.training_outputs})"
    header = [
        "Rendered by `amlwait render pipeline`: one AzureMLJobWaitTask@1 in a server job",
        "waits for the pipeline job `amlwait submit --as-pipeline` created (a step per",
        f"circuit). Agentless while training runs; the job name is {source}.",
        "Needs the Azure Machine Learning extension (ms-air-aiagility.azureml-v2).",
    ]
    if options.report:
        header.append(f"Then {REPORT_JOB} (an agent, seconds) reports each circuit as a test.")
    return dump({"jobs": rendered}, header=header)


class PipelineJobRoute(PipelineRoute):
    """``wait-pipeline.yml``; a job list, when given, names the one pipeline job."""

    kind = "pipeline"
    connection = "the Azure Resource Manager service connection"
    installs_amlwait = True
    connection_subscription = WAIT_TASK_SUBSCRIPTION

    def check_install(self, options: RenderOptions) -> None:
        """The report job installs amlwait; without it (``--no-report``) nothing does."""
        if not options.report and any((options.install, options.feed, options.index_url)):
            raise InputError(
                "render pipeline --no-report runs no agent step, so it installs nothing: "
                "leave out --install/--feed/--index-url"
            )

    def files(
        self, options: RenderOptions, jobs: Sequence[JobRef] | None, tag: str | None
    ) -> list[RenderedFile]:
        return [RenderedFile("wait-pipeline.yml", render_pipeline(options, jobs))]


__all__ = ["PipelineJobRoute", "render_pipeline"]
