"""Pipeline YAML for every way of waiting for Azure ML jobs from Azure DevOps.

Pure functions: job references and options in, YAML text out; no file or network I/O.

=================  ==========================================================  =========
kind               what waits                                                  job list
=================  ==========================================================  =========
``matrix``         ``AzureMLJobWaitTask@1`` legs of a ``pool: server`` matrix  static
``template``       a jobs template: one server job per Azure ML job            static
``agent``          ``amlwait wait`` on an agent (reports, test results)        run time
``webhook-matrix`` a generator job, then server-job legs that register Azure   run time
                   ML's DevOps webhook with ``InvokeRESTAPI@1`` (PATCH)
``service``        one server job calling the amlwait waiting service          run time
=================  ==========================================================  =========

Limits the functions enforce (each breach is an :class:`~amlwait.errors.InputError`):
matrix leg names match ``^[A-Za-z][A-Za-z0-9_]{0,99}$`` and are unique ignoring case; at
most 256 legs per job (more jobs are split over several); every job has an explicit
``timeoutInMinutes`` (``0`` has been seen to mean 60 minutes); ``headers`` and ``body`` of
``InvokeRESTAPI@1`` stay under 2,000 characters as written.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace

from amlwait.core.jobs import JobRef
from amlwait.devops.vso import set_variable
from amlwait.devops.yamltext import Commented, Node, dump
from amlwait.errors import InputError

KINDS = ("matrix", "template", "agent", "webhook-matrix", "service")
AGENT_KINDS = ("hosted", "self-hosted")

WAIT_TASK = "AzureMLJobWaitTask@1"
WAIT_TASK_MAX_MINUTES = 2880  # the task's documented maximum: two days
SERVER_JOB_MAX_MINUTES = 43200  # server jobs: 30 days
HOSTED_PAID_MINUTES = 360
HOSTED_FREE_MINUTES = 60
SELF_HOSTED_DEFAULT_MINUTES = 2880
AGENT_MARGIN_MINUTES = 10  # amlwait stops this long before the agent would be killed
SERVICE_MARGIN_MINUTES = 30  # the server job outlives the service's own deadline
MAX_LEGS = 256
MAX_CHUNKS = 100
MAX_INPUT_CHARS = 2000  # InvokeRESTAPI@1 headers/body maxLength
WEBHOOK_API_VERSION = "2024-04-01"

ARTIFACT = "training_jobs"
MANIFEST_FILE = "training_jobs.json"
MANIFEST_PATH = f"$(Pipeline.Workspace)/{ARTIFACT}/{MANIFEST_FILE}"
REPORT_DIR = "$(Build.ArtifactStagingDirectory)/amlwait"
TEMPLATE_PATH = "templates/wait-for-jobs.yml"
USAGE_PATH = "wait-for-training.yml"
GENERATOR_JOB = "Gen"
GENERATOR_STEP = "split"

LEG_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
MAX_LEG_NAME = 100
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


@dataclass(frozen=True)
class RenderOptions:
    """Everything a rendered pipeline needs besides the job list.

    ``service_connection`` is an Azure Resource Manager connection for every kind but
    ``service``, where it is the Generic connection to the amlwait service.
    ``timeout_minutes`` ``None`` means the kind's default. ``training_outputs`` is
    ``STAGE.JOB.STEP`` of the training stage's step that sets ``batchTag`` and
    ``jobCount`` (used by ``service``).
    """

    service_connection: str
    subscription: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    timeout_minutes: int | None = None
    agent: str = "hosted"
    pool: str | None = None
    max_legs: int = MAX_LEGS
    max_chunks: int = 4
    amlwait_spec: str = "amlwait"
    training_outputs: str = "Training.Submit.meta"


@dataclass(frozen=True)
class RenderedFile:
    """One rendered file: where it belongs (relative path) and its text."""

    path: str
    text: str


# ----------------------------------------------------------------------------- legs


def _leg_base(name: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not (text[:1].isascii() and text[:1].isalpha()):
        text = "job_" + text
    return text


def leg_names(jobs: Sequence[JobRef]) -> list[str]:
    """A valid matrix leg name per job, unique ignoring case, in the jobs' order.

    The job name with every ``-`` (or other character a leg name may not hold) turned
    into ``_``, ``job_`` in front when it does not start with a letter. A name longer
    than 100 characters, or one already taken (``a-b`` and ``a_b``; the same job name in
    two workspaces), is shortened and ends with ``_`` and 8 hex digits of a hash of the
    job's workspace and name, so it stays the same from one render to the next.
    """
    names: list[str] = []
    taken: set[str] = set()
    for job in jobs:
        base = _leg_base(job.name)
        candidate = base
        if len(base) > MAX_LEG_NAME or base.lower() in taken:
            digest = hashlib.sha256(f"{job.workspace}/{job.name}".encode()).hexdigest()
            attempt = 0
            while True:
                suffix = f"_{digest[:8]}" + (f"_{attempt}" if attempt else "")
                candidate = base[: MAX_LEG_NAME - len(suffix)] + suffix
                if candidate.lower() not in taken:
                    break
                attempt += 1
                if attempt > len(jobs):
                    break
        if not LEG_NAME_PATTERN.match(candidate) or candidate.lower() in taken:
            raise InputError(
                f"cannot derive a unique matrix leg name for job {job.name!r} "
                "(leg names are letters, digits and '_', at most 100, starting with a letter)"
            )
        taken.add(candidate.lower())
        names.append(candidate)
    return names


def _check_max_legs(max_legs: int) -> None:
    if not 1 <= max_legs <= MAX_LEGS:
        raise InputError(f"--max-legs {max_legs}: a matrix holds 1 to {MAX_LEGS} legs")


def matrix_chunks(
    jobs: Sequence[JobRef], *, max_legs: int = MAX_LEGS, with_subscription: bool = True
) -> list[dict[str, dict[str, str]]]:
    """The jobs as matrix legs ``{LEG: {"jobName", "subscription"?, "resourceGroup",
    "workspace"}}``, in chunks of at most ``max_legs`` legs, in the jobs' order."""
    _check_max_legs(max_legs)
    legs: list[tuple[str, dict[str, str]]] = []
    for name, job in zip(leg_names(jobs), jobs, strict=True):
        leg = {"jobName": job.name}
        if with_subscription:
            leg["subscription"] = job.workspace.subscription
        leg["resourceGroup"] = job.workspace.resource_group
        leg["workspace"] = job.workspace.workspace
        legs.append((name, leg))
    return [dict(legs[start : start + max_legs]) for start in range(0, len(legs), max_legs)]


def matrix_variable_lines(
    jobs: Sequence[JobRef],
    *,
    variable: str = "legs",
    max_legs: int = MAX_LEGS,
    max_chunks: int | None = None,
) -> list[str]:
    """``##vso[task.setvariable]`` lines: ``VARIABLE_0`` … one compact JSON matrix per
    chunk of at most ``max_legs`` legs, then ``VARIABLE_count``; all output variables."""
    if not _VARIABLE_NAME.match(variable):
        raise InputError(
            f"--variable {variable!r}: use letters, digits and '_', starting with a letter"
        )
    chunks = matrix_chunks(jobs, max_legs=max_legs)
    if max_chunks is not None and len(chunks) > max_chunks:
        raise InputError(
            f"{len(jobs)} jobs need {len(chunks)} matrices of at most {max_legs} legs, but the "
            f"pipeline has only {max_chunks} waiting jobs; render it again with "
            f"--max-chunks {len(chunks)} or more"
        )
    lines = [
        set_variable(f"{variable}_{index}", json.dumps(chunk, separators=(",", ":")))
        for index, chunk in enumerate(chunks)
    ]
    lines.append(set_variable(f"{variable}_count", str(len(chunks))))
    return lines


# ----------------------------------------------------------------------------- helpers


def _timeout(minutes: int | None, *, default: int, maximum: int, why: str, minimum: int = 1) -> int:
    value = default if minutes is None else minutes
    if value == 0:
        raise InputError(
            "--timeout-minutes 0: Azure DevOps has been seen to read 0 as 60 minutes; "
            "give the minutes explicitly"
        )
    if not minimum <= value <= maximum:
        raise InputError(f"--timeout-minutes {value}: must be {minimum} to {maximum} ({why})")
    return value


def _one_subscription(jobs: Sequence[JobRef]) -> None:
    subscriptions = {job.workspace.subscription for job in jobs}
    if len(subscriptions) > 1:
        raise InputError(
            f"the jobs span {len(subscriptions)} subscriptions, but {WAIT_TASK} reaches the "
            "subscription of its service connection only; render one file per subscription"
        )


def _require(value: str | None, flag: str, kind: str, what: str) -> str:
    if not value:
        raise InputError(f"render {kind} needs {flag} ({what})")
    return value


def _check_input_length(name: str, text: str) -> None:
    if len(text) >= MAX_INPUT_CHARS:
        raise InputError(
            f"the InvokeRESTAPI@1 {name} would be {len(text)} characters; the task accepts "
            f"fewer than {MAX_INPUT_CHARS}"
        )


def _format_minutes(minutes: int) -> str:
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _install_step(spec: str) -> dict[str, Node]:
    # A virtual environment: works on hosted and self-hosted Linux agents alike and
    # never meets an "externally managed" system Python.
    venv = "$(Agent.TempDirectory)/amlwait-venv"
    return {
        "script": (
            f'python3 -m venv "{venv}"\n'
            f'"{venv}/bin/python" -m pip install --quiet --upgrade pip {shlex.quote(spec)}\n'
            f'echo "##vso[task.prependpath]{venv}/bin"\n'
        ),
        "displayName": "Install amlwait",
    }


def _download_step() -> dict[str, Node]:
    return {
        "task": "DownloadPipelineArtifact@2",
        "displayName": f"Download the job manifest ({ARTIFACT})",
        "inputs": {
            "buildType": "current",
            "artifactName": ARTIFACT,
            "targetPath": f"$(Pipeline.Workspace)/{ARTIFACT}",
        },
    }


def _wait_task(service_connection: str) -> dict[str, Node]:
    return {
        "task": WAIT_TASK,
        "displayName": "Wait for $(jobName)",
        "inputs": {
            "serviceConnection": service_connection,
            "resourceGroupName": "$(resourceGroup)",
            "azureMLWorkspaceName": "$(workspace)",
            "azureMLJobName": "$(jobName)",
        },
    }


# ----------------------------------------------------------------------------- kinds


def _wait_task_timeout(options: RenderOptions) -> int:
    return _timeout(
        options.timeout_minutes,
        default=WAIT_TASK_MAX_MINUTES,
        maximum=WAIT_TASK_MAX_MINUTES,
        why=f"{WAIT_TASK} waits at most two days",
    )


def render_matrix(jobs: Sequence[JobRef], options: RenderOptions) -> str:
    """Static ``pool: server`` matrix jobs, one ``AzureMLJobWaitTask@1`` leg per job."""
    _one_subscription(jobs)
    timeout = _wait_task_timeout(options)
    chunks = matrix_chunks(jobs, max_legs=options.max_legs, with_subscription=False)
    rendered: list[Node] = []
    for index, chunk in enumerate(chunks):
        rendered.append(
            {
                "job": f"WaitForJobs_{index}",
                "displayName": f"Wait for Azure ML jobs ({index + 1}/{len(chunks)})",
                "pool": "server",
                "timeoutInMinutes": Commented(timeout, "the task's documented maximum: 2 days"),
                "strategy": {"matrix": chunk},
                "steps": [_wait_task(options.service_connection)],
            }
        )
    header = [
        f"Rendered by `amlwait render matrix`: {len(jobs)} Azure ML jobs, one matrix leg each,",
        f"at most {options.max_legs} legs per server job. Agentless: no agent minutes. Needs the",
        "Azure Machine Learning extension (ms-air-aiagility.azureml-v2). The job list is",
        "static: render again when it changes. Put these jobs in the waiting stage.",
    ]
    return dump({"jobs": rendered}, header=header)


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
    _one_subscription(jobs)
    timeout = _wait_task_timeout(options)
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


def render_agent(options: RenderOptions) -> str:
    """An agent job running ``amlwait wait`` on the manifest artifact, with reports."""
    kind = "agent"
    if options.agent not in AGENT_KINDS:
        raise InputError(f"--agent {options.agent!r}: use hosted or self-hosted")
    resource_group = _require(
        options.resource_group, "-g/--resource-group", kind, "the jobs' resource group"
    )
    workspace = _require(options.workspace, "-w/--workspace-name", kind, "the jobs' workspace")
    hosted = options.agent == "hosted"
    minimum = AGENT_MARGIN_MINUTES + 5
    if hosted:
        timeout = _timeout(
            options.timeout_minutes,
            default=HOSTED_PAID_MINUTES,
            maximum=HOSTED_PAID_MINUTES,
            why="Microsoft-hosted agents stop a job after 360 minutes (60 on the free tier)",
            minimum=minimum,
        )
        pool: Node = {"vmImage": "ubuntu-latest"}
        comment = "Microsoft-hosted maximum (paid); the free tier stops jobs at 60"
    else:
        timeout = _timeout(
            options.timeout_minutes,
            default=SELF_HOSTED_DEFAULT_MINUTES,
            maximum=SERVER_JOB_MAX_MINUTES,
            why="self-hosted agents have no limit of their own; 30 days is plenty",
            minimum=minimum,
        )
        pool = {"name": options.pool or "Default"}
        comment = "explicit: never 0"
    wait_minutes = timeout - AGENT_MARGIN_MINUTES
    subscription = (
        shlex.quote(options.subscription)
        if options.subscription
        else '"$(az account show --query id --output tsv)"'
    )
    script = (
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
    job: dict[str, Node] = {
        "job": "WaitForJobs",
        "displayName": "Wait for the Azure ML jobs (amlwait)",
        "pool": pool,
        "timeoutInMinutes": Commented(timeout, comment),
        "steps": [
            {"checkout": "none"},
            _download_step(),
            _install_step(options.amlwait_spec),
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
        ],
    }
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
    return dump({"jobs": [job]}, header=header)


def webhook_body() -> str:
    """The PATCH body registering Azure ML's Azure DevOps webhook for the current task.

    Casing as in Microsoft's example; Azure ML completes the task when the job ends.
    """
    hook = {
        "WebhookType": "AzureDevOps",
        "EventType": "RunTerminated",
        "PlanUri": "$(system.CollectionUri)",
        "ProjectId": "$(system.TeamProjectId)",
        "HubName": "$(system.HostType)",
        "PlanId": "$(system.PlanId)",
        "JobId": "$(system.JobId)",
        "TimelineId": "$(system.TimelineId)",
        "TaskInstanceId": "$(system.TaskInstanceId)",
        "AuthToken": "$(system.AccessToken)",
    }
    body = {
        "Properties": {
            "NotificationSetting": {"Webhooks": {"ADO_Webhook_$(system.TimelineId)": hook}}
        }
    }
    return json.dumps(body, separators=(",", ":"))


def render_webhook_matrix(options: RenderOptions, jobs: Sequence[JobRef] | None = None) -> str:
    """A generator agent job, then ``max_chunks`` server jobs whose matrix legs each
    register Azure ML's DevOps webhook on one job and wait for its callback."""
    kind = "webhook-matrix"
    subscription = _require(
        options.subscription, "--subscription", kind, "the jobs' subscription, for the ARM path"
    )
    resource_group = _require(
        options.resource_group, "-g/--resource-group", kind, "the jobs' resource group"
    )
    workspace = _require(options.workspace, "-w/--workspace-name", kind, "the jobs' workspace")
    _check_max_legs(options.max_legs)
    if not 1 <= options.max_chunks <= MAX_CHUNKS:
        raise InputError(f"--max-chunks {options.max_chunks}: must be 1 to {MAX_CHUNKS}")
    capacity = options.max_chunks * options.max_legs
    if jobs is not None and len(jobs) > capacity:
        raise InputError(
            f"{len(jobs)} jobs exceed {options.max_chunks} chunks of {options.max_legs} legs "
            f"({capacity}); raise --max-chunks"
        )
    timeout = _timeout(
        options.timeout_minutes,
        default=WAIT_TASK_MAX_MINUTES,
        maximum=SERVER_JOB_MAX_MINUTES,
        why="server jobs run at most 30 days",
    )
    body = webhook_body()
    headers = json.dumps({"Content-Type": "application/json"})
    _check_input_length("body", body)
    _check_input_length("headers", headers)
    split = (
        f'amlwait matrix "{MANIFEST_PATH}" --variable legs'
        f" --max-legs {options.max_legs} --max-chunks {options.max_chunks}"
        f" --subscription {shlex.quote(subscription)}"
        f" --resource-group {shlex.quote(resource_group)}"
        f" --workspace-name {shlex.quote(workspace)}\n"
    )
    generator: dict[str, Node] = {
        "job": GENERATOR_JOB,
        "displayName": "Split the job list into matrices",
        "pool": {"vmImage": "ubuntu-latest"},
        "timeoutInMinutes": 15,
        "steps": [
            {"checkout": "none"},
            _download_step(),
            _install_step(options.amlwait_spec),
            {"script": split, "name": GENERATOR_STEP, "displayName": "Write the matrices"},
        ],
    }
    url = (
        "subscriptions/$(subscription)/resourceGroups/$(resourceGroup)"
        "/providers/Microsoft.MachineLearningServices/workspaces/$(workspace)"
        f"/jobs/$(jobName)?api-version={WEBHOOK_API_VERSION}"
    )
    outputs = f"dependencies.{GENERATOR_JOB}.outputs['{GENERATOR_STEP}.legs"
    rendered: list[Node] = [generator]
    for index in range(options.max_chunks):
        rendered.append(
            {
                "job": f"Wait_{index}",
                "displayName": f"Wait for Azure ML jobs (matrix {index + 1})",
                "dependsOn": GENERATOR_JOB,
                # The number on the left: the count (a string) is converted to a number.
                "condition": f"and(succeeded(), lt({index}, {outputs}_count']))",
                "pool": "server",
                "timeoutInMinutes": timeout,
                "strategy": {"matrix": f"$[ {outputs}_{index}'] ]"},
                "steps": [
                    {
                        "task": "InvokeRESTAPI@1",
                        "displayName": "Wait for $(jobName)",
                        "inputs": {
                            "connectionType": "connectedServiceNameARM",
                            "azureServiceConnection": options.service_connection,
                            "method": "PATCH",
                            "headers": headers,
                            "urlSuffix": url,
                            "body": body,
                            "waitForCompletion": "true",
                        },
                    }
                ],
            }
        )
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


def service_headers() -> str:
    """The callback headers ``InvokeRESTAPI@1`` sends by default, plus the service key."""
    headers = {
        "Content-Type": "application/json",
        "PlanUrl": "$(system.CollectionUri)",
        "ProjectId": "$(system.TeamProjectId)",
        "HubName": "$(system.HostType)",
        "PlanId": "$(system.PlanId)",
        "JobId": "$(system.JobId)",
        "TimelineId": "$(system.TimelineId)",
        "TaskInstanceId": "$(system.TaskInstanceId)",
        "AuthToken": "$(system.AccessToken)",
        "X-Amlwait-Key": "$(AMLWAIT_SERVICE_KEY)",
    }
    return json.dumps(headers, indent=0)


def service_body(
    *,
    subscription: str,
    resource_group: str,
    workspace: str,
    tag: str,
    expected_jobs: int | str,
    timeout: str,
) -> str:
    """The ``POST v1/waits`` body; ``expected_jobs`` may be a ``$(macro)`` (unquoted)."""
    marker = "__EXPECTED_JOBS__"
    body = {
        "subscription": subscription,
        "resourceGroup": resource_group,
        "workspace": workspace,
        "tag": tag,
        "expectedJobs": marker,
        "timeout": timeout,
        "failFast": False,
        "cancelRemaining": False,
    }
    return json.dumps(body).replace(json.dumps(marker), str(expected_jobs))


def _training_outputs(spec: str) -> tuple[str, str, str]:
    parts = spec.split(".")
    if len(parts) != 3 or not all(_IDENTIFIER.match(part) for part in parts):
        raise InputError(
            f"--training-outputs {spec!r}: expected STAGE.JOB.STEP, e.g. Training.Submit.meta"
        )
    return parts[0], parts[1], parts[2]


def render_service(
    options: RenderOptions, *, tag: str | None = None, expected_jobs: int | None = None
) -> str:
    """One server job handing the wait to the amlwait service (``POST v1/waits``).

    ``tag`` and ``expected_jobs`` from a manifest, or (both ``None``) from the training
    stage's output variables ``batchTag`` and ``jobCount`` at run time.
    """
    kind = "service"
    subscription = _require(options.subscription, "--subscription", kind, "the jobs' subscription")
    resource_group = _require(
        options.resource_group, "-g/--resource-group", kind, "the jobs' resource group"
    )
    workspace = _require(options.workspace, "-w/--workspace-name", kind, "the jobs' workspace")
    timeout = _timeout(
        options.timeout_minutes,
        default=WAIT_TASK_MAX_MINUTES + SERVICE_MARGIN_MINUTES,
        maximum=SERVER_JOB_MAX_MINUTES,
        why="server jobs run at most 30 days",
        minimum=SERVICE_MARGIN_MINUTES + 5,
    )
    job: dict[str, Node] = {
        "job": "WaitForJobs",
        "displayName": "Wait for the Azure ML jobs (amlwait service)",
        "pool": "server",
        "timeoutInMinutes": Commented(timeout, "the service's deadline + 30 minutes"),
    }
    if tag is None:
        stage, step_job, step = _training_outputs(options.training_outputs)
        source = f"stageDependencies.{stage}.{step_job}.outputs['{step}"
        job["variables"] = {
            "batchTag": f"$[ {source}.batchTag'] ]",
            "expectedJobs": f"$[ {source}.jobCount'] ]",
        }
        body_tag, body_count = "$(batchTag)", "$(expectedJobs)"
    else:
        body_tag, body_count = tag, str(expected_jobs)
    body = service_body(
        subscription=subscription,
        resource_group=resource_group,
        workspace=workspace,
        tag=body_tag,
        expected_jobs=body_count,
        timeout=_format_minutes(timeout - SERVICE_MARGIN_MINUTES),
    )
    headers = service_headers()
    _check_input_length("body", body)
    _check_input_length("headers", headers)
    job["steps"] = [
        {
            "task": "InvokeRESTAPI@1",
            "displayName": "Wait for the batch",
            "inputs": {
                "connectionType": "connectedServiceName",
                "serviceConnection": options.service_connection,
                "method": "POST",
                "urlSuffix": "v1/waits",
                "headers": headers,
                "body": body,
                "waitForCompletion": "true",
            },
        }
    ]
    header = [
        "Rendered by `amlwait render service`: one agentless job hands the wait to the amlwait",
        "waiting service, which calls back when the batch ends. Needs a Generic service",
        f"connection ({options.service_connection}) to the service and a SECRET pipeline",
        "variable AMLWAIT_SERVICE_KEY. The DevOps token in AuthToken has gone invalid after",
        "~24 h in long jobs.",
    ]
    return dump({"jobs": [job]}, header=header)


def render(
    kind: str,
    options: RenderOptions,
    *,
    jobs: Sequence[JobRef] | None = None,
    tag: str | None = None,
) -> list[RenderedFile]:
    """Every file ``kind`` needs, with the relative path it suggests for each."""
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not options.service_connection:
        what = "a Generic connection to the service" if kind == "service" else "an ARM connection"
        raise InputError(f"render {kind} needs --service-connection NAME ({what})")
    if kind in ("matrix", "template"):
        if not jobs:
            raise InputError(
                f"render {kind} writes a static job list: give --manifest FILE or --jobs A,B"
            )
        if kind == "matrix":
            return [RenderedFile("wait-matrix.yml", render_matrix(jobs, options))]
        return [
            RenderedFile(TEMPLATE_PATH, render_template_file()),
            RenderedFile(USAGE_PATH, render_template_usage(jobs, options)),
        ]
    if kind == "agent":
        if jobs is not None:
            raise InputError(
                "render agent takes no job list: the job reads the "
                f"{ARTIFACT} artifact at run time; leave out --manifest/--jobs"
            )
        return [RenderedFile("wait-agent.yml", render_agent(options))]
    if kind == "webhook-matrix":
        return [RenderedFile("wait-webhook-matrix.yml", render_webhook_matrix(options, jobs))]
    if jobs is not None:
        workspaces = {job.workspace for job in jobs}
        if len(workspaces) > 1:
            raise InputError(
                "the amlwait service waits for one workspace per call; the jobs span "
                f"{len(workspaces)}"
            )
        if tag is None:
            raise InputError(
                'render service needs the batch tag: the manifest has no "tag"; '
                "leave out --manifest to take it from the training stage at run time"
            )
        (where,) = workspaces
        options = replace(
            options,
            subscription=options.subscription or where.subscription,
            resource_group=options.resource_group or where.resource_group,
            workspace=options.workspace or where.workspace,
        )
        text = render_service(options, tag=tag, expected_jobs=len(jobs))
    else:
        text = render_service(options)
    return [RenderedFile("wait-service.yml", text)]


def document_stream(files: Sequence[RenderedFile]) -> str:
    """Several files as one YAML stream, each introduced by a ``# file:`` comment."""
    parts = [f"# file: {file.path}\n{file.text}" for file in files]
    return "---\n".join(parts)


__all__ = [
    "KINDS",
    "RenderOptions",
    "RenderedFile",
    "leg_names",
    "matrix_chunks",
    "matrix_variable_lines",
    "render",
    "render_agent",
    "render_matrix",
    "render_service",
    "render_template_file",
    "render_template_usage",
    "render_webhook_matrix",
    "service_body",
    "service_headers",
    "webhook_body",
]
