"""The ``service`` route: one agentless job hands the wait to the amlwait waiting service
(``POST v1/waits`` through a Generic service connection), which calls back when the batch
ends. The batch tag and job count come from a manifest, or at run time from the training
stage's output variables."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace

from amlwait.core.jobs import JobRef
from amlwait.devops.pipelines.base import (
    SERVER_JOB_MAX_MINUTES,
    WAIT_TASK_MAX_MINUTES,
    PipelineRoute,
    RenderedFile,
    RenderOptions,
    callback_macros,
    check_input_length,
    checked_timeout,
    require,
)
from amlwait.devops.yamltext import Commented, Node, dump
from amlwait.errors import InputError

SERVICE_MARGIN_MINUTES = 30  # the server job outlives the service's own deadline
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def service_headers() -> str:
    """The callback headers ``InvokeRESTAPI@1`` sends by default, plus the service key."""
    headers = {
        "Content-Type": "application/json",
        **callback_macros("PlanUrl"),
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


def _run_time_variables(training_outputs: str) -> dict[str, Node]:
    """Job variables ``batchTag`` and ``expectedJobs`` read from the training stage's step
    ``STAGE.JOB.STEP`` (its output variables ``batchTag`` and ``jobCount``)."""
    stage, step_job, step = _training_outputs(training_outputs)
    source = f"stageDependencies.{stage}.{step_job}.outputs['{step}"
    return {
        "batchTag": f"$[ {source}.batchTag'] ]",
        "expectedJobs": f"$[ {source}.jobCount'] ]",
    }


def _format_minutes(minutes: int) -> str:
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _post_step(options: RenderOptions, headers: str, body: str) -> dict[str, Node]:
    return {
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


def render_service(
    options: RenderOptions, *, tag: str | None = None, expected_jobs: int | None = None
) -> str:
    """One server job handing the wait to the amlwait service (``POST v1/waits``).

    ``tag`` and ``expected_jobs`` from a manifest, or (both ``None``) from the training
    stage's output variables ``batchTag`` and ``jobCount`` at run time. The service's
    deadline is the job's timeout less 30 minutes.
    """
    kind = "service"
    subscription = require(options.subscription, "--subscription", kind, "the jobs' subscription")
    resource_group = require(
        options.resource_group, "-g/--resource-group", kind, "the jobs' resource group"
    )
    workspace = require(options.workspace, "-w/--workspace-name", kind, "the jobs' workspace")
    timeout = checked_timeout(
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
        job["variables"] = _run_time_variables(options.training_outputs)
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
    check_input_length("body", body)
    check_input_length("headers", headers)
    job["steps"] = [_post_step(options, headers, body)]
    header = [
        "Rendered by `amlwait render service`: one agentless job hands the wait to the amlwait",
        "waiting service, which calls back when the batch ends. Needs a Generic service",
        f"connection ({options.service_connection}) to the service and a SECRET pipeline",
        "variable AMLWAIT_SERVICE_KEY. The DevOps token in AuthToken has gone invalid after",
        "~24 h in long jobs.",
    ]
    return dump({"jobs": [job]}, header=header)


class ServiceRoute(PipelineRoute):
    """``wait-service.yml``. Without a job list, tag and count are read at run time; with
    one (all in one workspace, with its batch tag), they are written in, and the list's
    workspace fills any of ``--subscription``/``-g``/``-w`` not given."""

    kind = "service"
    connection = "the Generic service connection to the amlwait service"

    def files(
        self, options: RenderOptions, jobs: Sequence[JobRef] | None, tag: str | None
    ) -> list[RenderedFile]:
        if jobs is None:
            return [RenderedFile("wait-service.yml", render_service(options))]
        workspaces = {job.workspace for job in jobs}
        if len(workspaces) > 1:
            names = ", ".join(sorted(str(where) for where in workspaces))
            raise InputError(
                f"the jobs span {len(workspaces)} workspaces ({names}), but the amlwait "
                "service waits for one workspace per call: render one file per workspace, "
                "each from a manifest of that workspace's jobs"
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
        return [RenderedFile("wait-service.yml", text)]
