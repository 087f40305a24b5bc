"""``submit --as-pipeline --via azure-ai-ml``: the same steps handed to azure-ai-ml.

Each step is the circuit's ``Command`` node as :func:`~amlwait.submit.azure_sdk.
sdk_command_job` loads it (the template rendered for the circuit, named and tagged as
planned), renamed to its node name, with the circuit's job name as display name. The
nodes go into one ``PipelineJob`` (``continue_on_step_failure=True``, the batch tag and
date as tags, named as planned); ``jobs.create_or_update`` registers each node's
component (anonymous, as the SDK does), uploads the code and creates the job.

As with plain ARM: an existing pipeline job of that name is reported, not resubmitted; an
existing job of another type is an :class:`InputError`; a refusal is
:class:`~amlwait.submit.pipeline_submit.PipelineRefused` (exit 1, with the SDK's message).
"""

from __future__ import annotations

from typing import Any

from amlwait.errors import InputError
from amlwait.submit.azure_sdk import _require_sdk, sdk_command_job
from amlwait.submit.pipeline import PipelinePlan
from amlwait.submit.pipeline_submit import PipelineOutcome, PipelineRefused, PipelineSubmission
from amlwait.submit.template import JobTemplate


def sdk_pipeline_job(template: JobTemplate, plan: PipelinePlan) -> Any:
    """``plan`` as an azure-ai-ml ``PipelineJob`` named ``plan.name``."""
    _require_sdk()
    from azure.ai.ml.entities import PipelineJob, PipelineJobSettings

    nodes: dict[str, Any] = {}
    for step in plan.steps:
        node = sdk_command_job(template, plan.batch, step.job)
        node.name = step.node
        node.display_name = step.job.base_name
        # The SDK's anonymous components are deterministic by default, and Azure ML reuses
        # a deterministic step's earlier result: a re-run of a circuit must really run.
        node.component._is_deterministic = False  # read-only property in azure-ai-ml 1.35
        nodes[step.node] = node
    properties = plan.properties()
    job = PipelineJob(
        jobs=nodes,
        settings=PipelineJobSettings(continue_on_step_failure=True),
        tags=dict(properties["tags"]),
        display_name=plan.name,
        experiment_name=properties["experimentName"],
    )
    job.name = plan.name
    return job


def submit_with_sdk(template: JobTemplate, plan: PipelinePlan, *, ml_client: Any = None) -> Any:
    """Create the pipeline job through azure-ai-ml (``MLClient`` with
    ``DefaultAzureCredential`` on the batch's workspace unless ``ml_client`` is given)."""
    _require_sdk()
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    job = sdk_pipeline_job(template, plan)
    client = ml_client or _client(plan)
    try:
        existing = client.jobs.get(plan.name)
    except ResourceNotFoundError:
        existing = None
    except AzureError as error:
        raise PipelineRefused(f"pipeline job {plan.name}: {_text(error)}") from None
    if existing is not None:
        if getattr(existing, "type", None) != "pipeline":
            raise InputError(
                f"--pipeline-name: job {plan.name} already exists and is a "
                f"{getattr(existing, 'type', '?')} job, not a pipeline job; choose another "
                "--pipeline-name"
            )
        return PipelineSubmission(
            plan.name, PipelineOutcome.EXISTS, str(existing.status or "Unknown")
        )
    try:
        created = client.jobs.create_or_update(job)
    except AzureError as error:  # azure-ai-ml's own errors (MlException) included
        raise PipelineRefused(f"pipeline job {plan.name} was not created: {_text(error)}") from None
    return PipelineSubmission(plan.name, PipelineOutcome.SUBMITTED, str(created.status))


def _client(plan: PipelinePlan) -> Any:
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    workspace = plan.batch.workspace
    return MLClient(
        DefaultAzureCredential(),
        subscription_id=workspace.subscription,
        resource_group_name=workspace.resource_group,
        workspace_name=workspace.workspace,
    )


def _text(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
