"""The ``agent`` route: ``amlwait wait`` on an agent for every job in the manifest artifact
(the list is read at run time), publishing the jobs as test results and the reports as an
artifact."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from amlwait.core.jobs import JobRef
from amlwait.devops.pipelines.base import (
    ARTIFACT,
    MANIFEST_PATH,
    SERVER_JOB_MAX_MINUTES,
    PipelineRoute,
    RenderedFile,
    RenderOptions,
    checked_timeout,
    download_step,
    require,
)
from amlwait.devops.pipelines.install import install_steps_for
from amlwait.devops.yamltext import Commented, Node, dump
from amlwait.errors import InputError

AGENT_KINDS = ("hosted", "self-hosted")
HOSTED_PAID_MINUTES = 360
HOSTED_FREE_MINUTES = 60
SELF_HOSTED_DEFAULT_MINUTES = 2880
AGENT_MARGIN_MINUTES = 10  # amlwait stops this long before the agent would be killed
REPORT_DIR = "$(Build.ArtifactStagingDirectory)/amlwait"


def _pool_and_timeout(options: RenderOptions) -> tuple[Node, int, str]:
    """The job's pool, its minutes, and the comment written next to them."""
    minimum = AGENT_MARGIN_MINUTES + 5
    if options.agent == "hosted":
        timeout = checked_timeout(
            options.timeout_minutes,
            default=HOSTED_PAID_MINUTES,
            maximum=HOSTED_PAID_MINUTES,
            why="Microsoft-hosted agents stop a job after 360 minutes (60 on the free tier)",
            minimum=minimum,
        )
        comment = "Microsoft-hosted maximum (paid); the free tier stops jobs at 60"
        return {"vmImage": "ubuntu-latest"}, timeout, comment
    timeout = checked_timeout(
        options.timeout_minutes,
        default=SELF_HOSTED_DEFAULT_MINUTES,
        maximum=SERVER_JOB_MAX_MINUTES,
        why="self-hosted agents have no limit of their own; 30 days is plenty",
        minimum=minimum,
    )
    return {"name": options.pool or "Default"}, timeout, "explicit: never 0"


def _wait_script(
    options: RenderOptions, resource_group: str, workspace: str, wait_minutes: int
) -> str:
    """The bash script running ``amlwait wait`` with every report."""
    subscription = (
        shlex.quote(options.subscription)
        if options.subscription
        else '"$(az account show --query id --output tsv)"'
    )
    return (
        f'mkdir -p "{REPORT_DIR}"\n'
        f'amlwait wait "{MANIFEST_PATH}" \\\n'
        f"  --subscription {subscription} \\\n"
        f"  --resource-group {shlex.quote(resource_group)} \\\n"
        f"  --workspace-name {shlex.quote(workspace)} \\\n"
        f"  --timeout {wait_minutes}m \\\n"
        "  --azure-devops \\\n"
        f'  --junit "{REPORT_DIR}/junit.xml" \\\n'
        f'  --summary "{REPORT_DIR}/summary.md" \\\n'
        f'  --html "{REPORT_DIR}/report.html" \\\n'
        f'  --json "{REPORT_DIR}/result.json"\n'
    )


def _steps(options: RenderOptions, script: str) -> list[Node]:
    """Download and install, wait under ``AzureCLI@2``'s login, publish whatever happened."""
    return [
        {"checkout": "none"},
        download_step(),
        *install_steps_for(options.install, options.feed, options.index_url),
        {
            "task": "AzureCLI@2",
            "displayName": "Wait for the Azure ML jobs",
            "inputs": {
                "azureSubscription": options.service_connection,
                "scriptType": "bash",
                "scriptLocation": "inlineScript",
                "keepAzSessionActive": Commented(
                    "true", "workload identity: keep the login alive past an hour"
                ),
                "inlineScript": script,
            },
        },
        {
            "task": "PublishTestResults@2",
            "displayName": "Publish the jobs as test results",
            "condition": "always()",
            "inputs": {
                "testResultsFormat": "JUnit",
                "testResultsFiles": f"{REPORT_DIR}/junit.xml",
                "testRunTitle": "Azure ML jobs",
            },
        },
        {
            "task": "PublishPipelineArtifact@1",
            "displayName": "Publish the wait report",
            "condition": "always()",
            "inputs": {
                "targetPath": REPORT_DIR,
                "artifact": "amlwait-report-$(System.JobAttempt)",
            },
        },
    ]


def _header(timeout: int, wait_minutes: int, hosted: bool) -> list[str]:
    header = [
        "Rendered by `amlwait render agent`: amlwait waits on an agent for every job in the",
        f"{ARTIFACT} artifact (the list is read at run time) and reports them as test results.",
        f"The job may run {timeout} minutes; amlwait stops after {wait_minutes} (exit 3) so the",
        "reports are still published. DefaultAzureCredential uses AzureCLI@2's login.",
    ]
    if hosted:
        header.append(
            f"Free tier: run `amlwait render agent --timeout-minutes {HOSTED_FREE_MINUTES}`."
        )
    return header


def render_agent(options: RenderOptions) -> str:
    """An agent job running ``amlwait wait`` on the manifest artifact, with reports.

    ``amlwait`` stops 10 minutes before the job's timeout, so the reports are published.
    """
    kind = "agent"
    if options.agent not in AGENT_KINDS:
        raise InputError(f"--agent {options.agent!r}: use hosted or self-hosted")
    resource_group = require(
        options.resource_group, "-g/--resource-group", kind, "the jobs' resource group"
    )
    workspace = require(options.workspace, "-w/--workspace-name", kind, "the jobs' workspace")
    pool, timeout, comment = _pool_and_timeout(options)
    wait_minutes = timeout - AGENT_MARGIN_MINUTES
    script = _wait_script(options, resource_group, workspace, wait_minutes)
    job: dict[str, Node] = {
        "job": "WaitForJobs",
        "displayName": "Wait for the Azure ML jobs (amlwait)",
        "pool": pool,
        "timeoutInMinutes": Commented(timeout, comment),
        "steps": _steps(options, script),
    }
    header = _header(timeout, wait_minutes, hosted=options.agent == "hosted")
    return dump({"jobs": [job]}, header=header)


class AgentRoute(PipelineRoute):
    """``wait-agent.yml``; refuses a job list (the job reads the artifact at run time)."""

    kind = "agent"
    connection = "the Azure Resource Manager service connection"
    installs_amlwait = True
    job_list_refusal = (
        f"render agent takes no job list: the job reads the {ARTIFACT} artifact at run time; "
        "leave out --manifest/--jobs"
    )

    def files(
        self, options: RenderOptions, jobs: Sequence[JobRef] | None, tag: str | None
    ) -> list[RenderedFile]:
        self.check_job_list(jobs is not None)
        return [RenderedFile("wait-agent.yml", render_agent(options))]
