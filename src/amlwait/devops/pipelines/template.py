"""The ``template`` route: a reusable jobs template, ``templates/wait-for-jobs.yml``, with
one agentless ``AzureMLJobWaitTask@1`` job per Azure ML job, and a file using it for a
static job list."""

from __future__ import annotations

from collections.abc import Sequence

from amlwait.core.jobs import JobRef
from amlwait.devops.pipelines.base import (
    WAIT_TASK_SUBSCRIPTION,
    PipelineRoute,
    RenderedFile,
    RenderOptions,
    one_subscription,
    static_job_list,
    wait_task_timeout,
)
from amlwait.devops.pipelines.legs import leg_names
from amlwait.devops.yamltext import Node, dump

TEMPLATE_PATH = "templates/wait-for-jobs.yml"
USAGE_PATH = "wait-for-training.yml"

TEMPLATE_TEXT = """\
# Wait for Azure ML jobs with AzureMLJobWaitTask@1: one agentless (pool: server) job per
# Azure ML job. Written by `amlwait render template`. Needs the Azure Machine Learning
# extension (ms-air-aiagility.azureml-v2); the task waits for ONE job, at most two days.
#
# jobs: a list of {name: JOB, id: JOB_ID?, resourceGroup: RG?, workspace: WS?}; id is the
# pipeline job's name (letters, digits, '_'; default: name with '-' turned into '_'),
# resourceGroup and workspace default to the parameters of the same name. All jobs must be
# in the subscription of serviceConnection (an Azure Resource Manager connection).
parameters:
  - name: jobs
    type: object
    default: []
  - name: serviceConnection
    type: string
  - name: resourceGroup
    type: string
    default: ''
  - name: workspace
    type: string
    default: ''
  - name: timeoutInMinutes
    type: number
    default: 2880

jobs:
  - ${{ each job in parameters.jobs }}:
      - job: ${{ coalesce(job.id, replace(job.name, '-', '_')) }}
        displayName: Wait for ${{ job.name }}
        pool: server
        timeoutInMinutes: ${{ parameters.timeoutInMinutes }}
        steps:
          - task: AzureMLJobWaitTask@1
            displayName: Wait for ${{ job.name }}
            inputs:
              serviceConnection: ${{ parameters.serviceConnection }}
              resourceGroupName: ${{ coalesce(job.resourceGroup, parameters.resourceGroup) }}
              azureMLWorkspaceName: ${{ coalesce(job.workspace, parameters.workspace) }}
              azureMLJobName: ${{ job.name }}
"""


def render_template_file() -> str:
    """The reusable jobs template ``templates/wait-for-jobs.yml`` (the same every time)."""
    return TEMPLATE_TEXT


def render_template_usage(jobs: Sequence[JobRef], options: RenderOptions) -> str:
    """A jobs file that waits for ``jobs`` through ``templates/wait-for-jobs.yml``."""
    one_subscription(jobs)
    timeout = wait_task_timeout(options)
    resource_group = options.resource_group or jobs[0].workspace.resource_group
    workspace = options.workspace or jobs[0].workspace.workspace
    entries: list[Node] = []
    for leg, job in zip(leg_names(jobs), jobs, strict=True):
        entry: dict[str, Node] = {"name": job.name, "id": leg}
        if job.workspace.resource_group != resource_group:
            entry["resourceGroup"] = job.workspace.resource_group
        if job.workspace.workspace != workspace:
            entry["workspace"] = job.workspace.workspace
        entries.append(entry)
    document: dict[str, Node] = {
        "jobs": [
            {
                "template": TEMPLATE_PATH,
                "parameters": {
                    "serviceConnection": options.service_connection,
                    "resourceGroup": resource_group,
                    "workspace": workspace,
                    "timeoutInMinutes": timeout,
                    "jobs": entries,
                },
            }
        ]
    }
    header = [
        f"Rendered by `amlwait render template`: waits for {len(jobs)} Azure ML jobs, one",
        f"agentless job each, through {TEMPLATE_PATH}. The job list is static.",
    ]
    return dump(document, header=header)


class TemplateRoute(PipelineRoute):
    """The template and ``wait-for-training.yml``; needs a job list, all in one
    subscription."""

    kind = "template"
    connection = "the Azure Resource Manager service connection"
    connection_subscription = WAIT_TASK_SUBSCRIPTION

    def files(
        self, options: RenderOptions, jobs: Sequence[JobRef] | None, tag: str | None
    ) -> list[RenderedFile]:
        listed = static_job_list(self.kind, jobs)
        return [
            RenderedFile(TEMPLATE_PATH, render_template_file()),
            RenderedFile(USAGE_PATH, render_template_usage(listed, options)),
        ]
