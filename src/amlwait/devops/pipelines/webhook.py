"""The ``webhook-matrix`` route (experimental): a generator agent job splits the manifest
artifact into matrices at run time, then server-job legs each register Azure ML's Azure
DevOps webhook on one job with ``InvokeRESTAPI@1`` (PATCH) and wait for its callback."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

from amlwait.core.jobs import JobRef
from amlwait.core.wording import count
from amlwait.devops.pipelines.base import (
    ARTIFACT,
    MANIFEST_PATH,
    SERVER_JOB_MAX_MINUTES,
    WAIT_TASK_MAX_MINUTES,
    PipelineRoute,
    RenderedFile,
    RenderOptions,
    callback_macros,
    check_input_length,
    checked_timeout,
    download_step,
    require,
)
from amlwait.devops.pipelines.install import install_steps_for
from amlwait.devops.pipelines.legs import check_max_legs
from amlwait.devops.yamltext import Node, dump
from amlwait.errors import InputError

MAX_CHUNKS = 100
WEBHOOK_API_VERSION = "2024-04-01"
GENERATOR_JOB = "Gen"
GENERATOR_STEP = "split"
_JOB_URL = (
    "subscriptions/$(subscription)/resourceGroups/$(resourceGroup)"
    "/providers/Microsoft.MachineLearningServices/workspaces/$(workspace)"
    f"/jobs/$(jobName)?api-version={WEBHOOK_API_VERSION}"
)
_OUTPUTS = f"dependencies.{GENERATOR_JOB}.outputs['{GENERATOR_STEP}.legs"


def webhook_body() -> str:
    """The PATCH body registering Azure ML's Azure DevOps webhook for the current task.

    Casing as in Microsoft's example; Azure ML completes the task when the job ends.
    """
    hook = {
        "WebhookType": "AzureDevOps",
        "EventType": "RunTerminated",
        **callback_macros("PlanUri"),
    }
    body = {
        "Properties": {
            "NotificationSetting": {"Webhooks": {"ADO_Webhook_$(system.TimelineId)": hook}}
        }
    }
    return json.dumps(body, separators=(",", ":"))


def _capacity(options: RenderOptions, jobs: Sequence[JobRef] | None) -> int:
    """``max_chunks`` × ``max_legs``, each checked, and refused when ``jobs`` exceed it."""
    check_max_legs(options.max_legs)
    if not 1 <= options.max_chunks <= MAX_CHUNKS:
        raise InputError(f"--max-chunks {options.max_chunks}: must be 1 to {MAX_CHUNKS}")
    capacity = options.max_chunks * options.max_legs
    if jobs is not None and len(jobs) > capacity:
        raise InputError(
            f"{count(len(jobs), 'job')} exceed {count(options.max_chunks, 'chunk')} of "
            f"{count(options.max_legs, 'leg')} ({capacity}); raise --max-chunks"
        )
    return capacity


def _generator_job(
    options: RenderOptions, subscription: str, resource_group: str, workspace: str
) -> dict[str, Node]:
    """The agent job writing the matrices as output variables with ``amlwait matrix``."""
    split = (
        f'amlwait matrix "{MANIFEST_PATH}" --variable legs'
        f" --max-legs {options.max_legs} --max-chunks {options.max_chunks}"
        f" --subscription {shlex.quote(subscription)}"
        f" --resource-group {shlex.quote(resource_group)}"
        f" --workspace-name {shlex.quote(workspace)}\n"
    )
    return {
        "job": GENERATOR_JOB,
        "displayName": "Split the job list into matrices",
        "pool": {"vmImage": "ubuntu-latest"},
        "timeoutInMinutes": 15,
        "steps": [
            {"checkout": "none"},
            download_step(),
            *install_steps_for(options.install, options.feed, options.index_url),
            {"script": split, "name": GENERATOR_STEP, "displayName": "Write the matrices"},
        ],
    }


def _wait_job(
    index: int, options: RenderOptions, timeout: int, headers: str, body: str
) -> dict[str, Node]:
    """Server job ``Wait_INDEX``: runs when the generator wrote more than ``index``
    matrices; each leg PATCHes the webhook onto its job and waits."""
    return {
        "job": f"Wait_{index}",
        "displayName": f"Wait for Azure ML jobs (matrix {index + 1})",
        "dependsOn": GENERATOR_JOB,
        # The number on the left: the count (a string) is converted to a number.
        "condition": f"and(succeeded(), lt({index}, {_OUTPUTS}_count']))",
        "pool": "server",
        "timeoutInMinutes": timeout,
        "strategy": {"matrix": f"$[ {_OUTPUTS}_{index}'] ]"},
        "steps": [
            {
                "task": "InvokeRESTAPI@1",
                "displayName": "Wait for $(jobName)",
                "inputs": {
                    "connectionType": "connectedServiceNameARM",
                    "azureServiceConnection": options.service_connection,
                    "method": "PATCH",
                    "headers": headers,
                    "urlSuffix": _JOB_URL,
                    "body": body,
                    "waitForCompletion": "true",
                },
            }
        ],
    }


def render_webhook_matrix(options: RenderOptions, jobs: Sequence[JobRef] | None = None) -> str:
    """A generator agent job, then ``max_chunks`` server jobs whose matrix legs each
    register Azure ML's DevOps webhook on one job and wait for its callback."""
    kind = "webhook-matrix"
    subscription = require(
        options.subscription, "--subscription", kind, "the jobs' subscription, for the ARM path"
    )
    resource_group = require(
        options.resource_group, "-g/--resource-group", kind, "the jobs' resource group"
    )
    workspace = require(options.workspace, "-w/--workspace-name", kind, "the jobs' workspace")
    capacity = _capacity(options, jobs)
    timeout = checked_timeout(
        options.timeout_minutes,
        default=WAIT_TASK_MAX_MINUTES,
        maximum=SERVER_JOB_MAX_MINUTES,
        why="server jobs run at most 30 days",
    )
    body = webhook_body()
    headers = json.dumps({"Content-Type": "application/json"})
    check_input_length("body", body)
    check_input_length("headers", headers)
    rendered: list[Node] = [_generator_job(options, subscription, resource_group, workspace)]
    for index in range(options.max_chunks):
        rendered.append(_wait_job(index, options, timeout, headers, body))
    header = [
        "Rendered by `amlwait render webhook-matrix`. EXPERIMENTAL: relies on platform",
        "behaviour Microsoft documents only in parts. A server-job matrix read from a runtime",
        "expression ($[ dependencies... ]) is unverified on pool: server; the webhook PATCH is",
        "documented only as an example (Azure ML docs, api-version 2024-04-01). Azure ML then",
        "completes each task when its job ends, with the DevOps token stored in the job's",
        "properties (it has gone invalid after ~24 h). Up to "
        f"{options.max_chunks} x {options.max_legs} = {capacity} jobs; Gen fails beyond.",
    ]
    return dump({"jobs": rendered}, header=header)


class WebhookMatrixRoute(PipelineRoute):
    """``wait-webhook-matrix.yml``; refuses a job list (the generator reads the artifact
    at run time, and ``amlwait matrix --max-chunks`` fails there beyond the capacity)."""

    kind = "webhook-matrix"
    connection = "the Azure Resource Manager service connection"
    installs_amlwait = True
    job_list_refusal = (
        "render webhook-matrix takes no job list: its generator job reads the "
        f"{ARTIFACT} artifact at run time (and fails when the jobs outgrow "
        "--max-chunks × --max-legs); leave out --manifest/--jobs"
    )

    def files(
        self, options: RenderOptions, jobs: Sequence[JobRef] | None, tag: str | None
    ) -> list[RenderedFile]:
        self.check_job_list(jobs is not None)
        return [RenderedFile("wait-webhook-matrix.yml", render_webhook_matrix(options, jobs))]
