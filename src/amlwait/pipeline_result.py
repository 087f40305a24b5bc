"""A wait on a pipeline job, reported per circuit: the pipeline job's result (its outcome
decides the exit code) with one job entry per step, so every report surface — console,
JUnit (one test case per circuit), summary, HTML timeline, ``--json`` — shows the circuits.

Each step of the manifest (``steps``: node name → circuit job name) is matched to a run
history step by its ``azureml.nodeid`` property, else by its display name (the circuit job
name ``submit --as-pipeline`` gives it). Its entry: named after the circuit job, the step's
status and outcome (Completed → succeeded, Failed → failed, Canceled → canceled, anything
else unfinished), its error message and code as the reason, its run history times
(created, started, ended) as first seen / finished / timeline and as the true run times,
and its own Studio link (the step's run id). A manifest step without a run is
``not_found`` once the pipeline job has ended ("the pipeline job has no step for it"), else
unfinished. Steps run history shows beyond
the manifest's are added after them. No I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from amlwait.core.jobs import JobRef, studio_url_for
from amlwait.core.manifest import Manifest
from amlwait.core.pipeline import StepRun
from amlwait.core.status import TERMINAL, Outcome, outcome_of_terminal
from amlwait.core.tracker import JobState
from amlwait.result import WaitResult, parse_iso


def step_state(name: str, step: StepRun, pipeline: JobRef) -> JobState:
    """The report entry of one step, named ``name`` (its circuit's job name)."""
    started, ended = parse_iso(step.started), parse_iso(step.ended)
    created = parse_iso(step.created)
    history: list[tuple[float, str]] = []
    if created is not None:
        history.append((created, "NotStarted"))
    if started is not None:
        history.append((started, "Running"))
    if ended is not None and step.status in TERMINAL:
        history.append((ended, step.status))
    terminal = step.status in TERMINAL
    return JobState(
        ref=JobRef(pipeline.workspace, name),
        status=step.status,
        outcome=outcome_of_terminal(step.status) if terminal else Outcome.UNFINISHED,
        reason=step.reason if step.status != "Completed" else None,
        first_seen=started if started is not None else created,
        status_since=ended if terminal else started,
        finished_at=ended if terminal else None,
        studio_url=studio_url_for(JobRef(pipeline.workspace, step.run_id)),
        created_at=step.created,
        history=history,
        error_code=step.error_code if step.status != "Completed" else None,
        started_at=started,
        ended_at=ended if terminal else None,
    )


def per_step_result(
    pipeline_result: WaitResult, manifest: Manifest, steps: Sequence[StepRun], requests: int
) -> WaitResult:
    """``pipeline_result`` with its jobs replaced by the pipeline's steps (see the module
    docstring); ``requests`` is what reading the steps cost."""
    assert manifest.pipeline is not None
    return steps_result(pipeline_result, manifest.jobs[0], manifest.steps, steps, requests)


def steps_result(
    pipeline_result: WaitResult,
    pipeline: JobRef,
    expected: Sequence[tuple[str, str]],
    steps: Sequence[StepRun],
    requests: int,
) -> WaitResult:
    """``pipeline_result`` (the wait on ``pipeline`` alone) with its jobs replaced by the
    steps: first each ``(node name, circuit job name)`` of ``expected`` in order, then the
    steps run history shows beyond them in its order (all of them when ``expected`` is
    empty, as for the service, which has no manifest); ``requests`` is what reading the
    steps cost, added to the result's."""
    pipeline_ended = any(job.finished for job in pipeline_result.jobs)
    by_node = {s.node: s for s in steps if s.node}
    by_name = {s.display_name: s for s in steps}
    used: set[str] = set()
    jobs: list[JobState] = []
    for node, name in expected:
        step = by_node.get(node) or by_name.get(name)
        if step is None:
            missing = JobState(
                ref=JobRef(pipeline.workspace, name),
                outcome=Outcome.NOT_FOUND if pipeline_ended else Outcome.UNFINISHED,
                reason="the pipeline job has no step for it" if pipeline_ended else None,
            )
            jobs.append(missing)
            continue
        used.add(step.run_id)
        jobs.append(step_state(name, step, pipeline))
    for step in steps:
        if step.run_id not in used:
            jobs.append(step_state(step.display_name or step.run_id, step, pipeline))
    return dataclasses.replace(
        pipeline_result, jobs=jobs, requests=pipeline_result.requests + requests
    )
