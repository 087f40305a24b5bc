"""``amlwait submit --as-pipeline``: the batch as one pipeline job, behind the click layer.

Checked before the first request (exit 2, nothing sent): everything ``submit`` checks,
the pipeline name (``--pipeline-name``), and that no two circuits share a node name. Then
(``--via arm``) each local code folder is registered once as for a batch of jobs, and
:class:`~amlwait.submit.pipeline_submit.PipelineArmSubmitter` registers the components
and creates the pipeline job; ``--via azure-ai-ml`` hands the same steps to azure-ai-ml
(:mod:`~amlwait.submit.azure_sdk_pipeline`).

Printed: one line per circuit (``KEY  NODE  JOB NAME``), then what happened to the pipeline
job. The manifest (:mod:`amlwait.core.manifest`, the pipeline form) names the pipeline job
and its steps; it is written when the pipeline job exists (created now or before).

Exit codes: 0 the pipeline job exists · 1 the service refused a component or the pipeline
job (its message; nothing half-created: no job exists, and registered components are
reused by the next run) · 2 bad input · 130 interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from amlwait.core.jobs import JobRef
from amlwait.core.manifest import Manifest
from amlwait.core.wording import count
from amlwait.errors import EXIT_SUCCEEDED, InputError
from amlwait.submit.code_upload import register_batch_code
from amlwait.submit.pipeline import (
    DEFAULT_PIPELINE_PATTERN,
    PipelinePlan,
    pipeline_name,
    plan_pipeline,
)
from amlwait.submit.pipeline_submit import PipelineArmSubmitter, PipelineSubmission
from amlwait.submit.plan import Batch
from amlwait.submit.template import JobTemplate


def plan_for(batch: Batch, options: dict[str, Any]) -> PipelinePlan:
    """The pipeline plan of ``batch`` (raises :class:`InputError` on a bad name)."""
    pattern = options.get("pipeline_name") or DEFAULT_PIPELINE_PATTERN
    return plan_pipeline(batch, pipeline_name(pattern, batch.run_date))


def run_pipeline_submit(
    batch: Batch,
    template: JobTemplate,
    options: dict[str, Any],
    output: Path | None,
    out: TextIO,
    write_json: Callable[[Path, Any], None],
) -> int:
    """Submit (or dry-run) ``batch`` as one pipeline job; the manifest goes to ``output``
    through ``write_json`` (the command layer's atomic writer)."""
    if options.get("retry_failed") and options.get("via") == "azure-ai-ml":
        raise InputError(
            "--retry-failed with --as-pipeline needs --via arm (it reads the steps' "
            "statuses from run history)"
        )
    if options.get("matrix_variable"):
        raise InputError(
            "--matrix-variable does not apply to --as-pipeline: the wait follows one "
            "pipeline job (amlwait render pipeline)"
        )
    plan = plan_for(batch, options)
    if options["dry_run"]:
        _print_steps(plan, out)
        print(
            f"dry run: pipeline job {plan.name} with {count(len(plan.steps), 'step')} for "
            f"{batch.run_date.isoformat()} in {batch.workspace.workspace} (tag {batch.tag}); "
            "nothing was sent, no manifest written",
            file=out,
            flush=True,
        )
        return EXIT_SUCCEEDED
    if options.get("via") == "azure-ai-ml":
        from amlwait.submit.azure_sdk_pipeline import submit_with_sdk

        submission = submit_with_sdk(template, plan)
    else:
        submission = _submit_arm(plan, options, out)
    named = _named_plan(plan, submission)
    _print_steps(named, out)
    assert output is not None
    write_json(output, _manifest(named, output).to_document())
    _say(submission, named, output, out)
    return EXIT_SUCCEEDED


def _named_plan(plan: PipelinePlan, submission: PipelineSubmission) -> PipelinePlan:
    """The plan as the pipeline job the manifest names: its name, and only its steps."""
    steps = plan.steps
    if submission.nodes is not None:
        steps = tuple(step for step in plan.steps if step.node in submission.nodes)
    return PipelinePlan(submission.name, plan.batch, steps or plan.steps)


def _submit_arm(plan: PipelinePlan, options: dict[str, Any], out: TextIO) -> PipelineSubmission:
    import asyncio

    from amlwait.azureml.arm import ArmJobSource

    source = ArmJobSource(endpoint=options["arm_endpoint"], api_version=options["api_version"])

    async def main() -> PipelineSubmission:
        async with source:
            current = plan
            if not options.get("no_code_upload"):
                batch, registered = await register_batch_code(plan.batch, source)
                for done in registered:
                    print(done.describe(), file=out, flush=True)
                current = plan_pipeline(batch, plan.name)
            submitter = PipelineArmSubmitter(source, concurrency=options["concurrency"])
            return await submitter.submit(current, retry_failed=bool(options.get("retry_failed")))

    return asyncio.run(main())


def _print_steps(plan: PipelinePlan, out: TextIO) -> None:
    width = max(len(step.job.key) for step in plan.steps)
    node_width = max(len(step.node) for step in plan.steps)
    for step in plan.steps:
        print(
            f"{step.job.key:<{width}}  {step.node:<{node_width}}  {step.job.base_name}",
            file=out,
        )


def _manifest(plan: PipelinePlan, output: Path) -> Manifest:
    return Manifest(
        jobs=(JobRef(plan.batch.workspace, plan.name),),
        tag=plan.batch.tag,
        source=str(output),
        pipeline=plan.name,
        steps=tuple((step.node, step.job.base_name) for step in plan.steps),
    )


def _say(submission: PipelineSubmission, plan: PipelinePlan, output: Path, out: TextIO) -> None:
    if submission.outcome.value == "exists":
        what = f"exists ({submission.status}); nothing was submitted"
    elif submission.outcome.value == "resubmitted":
        what = (
            f"resubmitted ({submission.status}) for the circuits {submission.previous} did "
            f"not complete ({submission.previous_status})"
        )
    else:
        what = (
            f"submitted ({submission.status}); {submission.components_registered} components "
            f"registered, {submission.components_found} found"
        )
    print(
        f"pipeline job {plan.name} with {count(len(plan.steps), 'step')} {what}; {output} names it "
        f"(tag {plan.batch.tag})",
        file=out,
        flush=True,
    )
