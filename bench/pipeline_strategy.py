"""Strategy ``amlwait-pipeline``: the batch submitted as ONE pipeline job and waited for.

What ``amlwait submit --as-pipeline``, ``amlwait wait`` on its manifest and the reports do,
through the same code, over the simulated network (see :mod:`bench.sim`, ``pipeline=True``):

1. the plan: one circuit per scenario job (plant ``BENCH``, circuit ``00000`` …, job name
   ``{plant}_{circuit}`` = the scenario job's name) from :data:`JOB_TEMPLATE` (the shape
   of ``examples/job.yml``: the circuit reaches the command through node inputs, so every
   step shares one content-addressed component), then :func:`~amlwait.submit.pipeline.
   plan_pipeline`;
2. :class:`~amlwait.submit.pipeline_submit.PipelineArmSubmitter`: ``GET`` the pipeline job
   (404), ``GET``/``PUT`` the component, ``PUT`` the PipelineJob;
3. :class:`~amlwait.waiter.Waiter` on the pipeline job with the batch tag (as the
   manifest names it), then :func:`~amlwait.pipeline_wait.per_circuit` with the
   manifest's steps — run history's children, one entry per circuit;
4. every report ``amlwait wait`` writes (JUnit, summary, HTML, ``--json``), rendered.

Every circuit is *known* when its step is read, i.e. once the pipeline job ended: the
route reports circuits at the end, and its detection latency says so. The requests are
all of it (submission included; ``submit_requests`` says how many of them submitted).
"""

from __future__ import annotations

import json
import random
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from amlwait.azureml.arm import ArmJobSource
from amlwait.azureml.credentials import StaticToken
from amlwait.core.clock import Clock
from amlwait.core.jobs import JobRef
from amlwait.core.retry import RetryPolicy
from amlwait.devops.html import render_html
from amlwait.devops.junit import render_junit
from amlwait.devops.summary import render_summary
from amlwait.pipeline_wait import per_circuit
from amlwait.submit.circuits import Circuit
from amlwait.submit.pipeline import PipelinePlan, plan_pipeline
from amlwait.submit.pipeline_submit import PipelineArmSubmitter
from amlwait.submit.plan import plan_batch
from amlwait.submit.template import JobTemplate
from amlwait.waiter import Waiter
from bench.scenario import ScriptedJob
from bench.sim import WS

PIPELINE_NAME = "BENCH_PIPELINE"
RUN_DATE = date(2026, 1, 1)
JOB_TEMPLATE = """\
type: command
display_name: "train {plant} {circuit} ({date})"
experiment_name: circuit-models
command: >-
  python train.py --plant ${{inputs.plant}} --circuit ${{inputs.circuit}}
inputs:
  plant: "{plant}"
  circuit: "{circuit}"
environment: azureml:circuit-training@latest
compute: azureml:cpu-cluster
"""

pipeline_counts: dict[str, Any] = {}
"""What the last run counted beyond the common columns (the child reports it)."""


def bench_plan(jobs: list[ScriptedJob]) -> PipelinePlan:
    """The pipeline plan whose steps are the scenario's jobs (by name)."""
    circuits = []
    for job in jobs:
        plant, _, circuit = job.name.partition("_")
        circuits.append(Circuit(plant, circuit))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "job.yml"
        path.write_text(JOB_TEMPLATE, encoding="utf-8")
        template = JobTemplate.load(path)
        batch = plan_batch(
            circuits,
            template,
            circuits_source="bench",
            run_date=RUN_DATE,
            workspace=WS,
            name_pattern="{plant}_{circuit}",
        )
    return plan_pipeline(batch, PIPELINE_NAME)


async def amlwait_pipeline(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> dict[str, tuple[float, str]]:
    """Submit, wait, report (the module docstring); each circuit known when its step is read."""
    plan = bench_plan(jobs)
    pipeline = JobRef(WS, plan.name)
    steps = tuple((step.node, step.job.base_name) for step in plan.steps)
    async with ArmJobSource(
        endpoint=endpoint,
        credential=StaticToken("bench"),
        clock=clock,
        retry=RetryPolicy(rng=random.Random(seed)),
        transport=network,
    ) as source:
        submission = await PipelineArmSubmitter(source).submit(plan)
        submitted = source.requests_sent
        waited = await Waiter([pipeline], source, clock=clock, tag=plan.batch.tag).run()
        made = await per_circuit(waited, pipeline, source, steps)
        read_at = clock.now()
    if made.problem is not None:
        raise RuntimeError(made.problem)
    result = made.result
    reports = [render_junit(result), render_summary(result), render_html(result)]
    reports.append(json.dumps(result.to_json()))
    pipeline_counts.update(
        submit_requests=submitted,
        components_registered=submission.components_registered,
        steps_reported=len(result.jobs),
        pipeline_outcome=waited.outcome.value,
        report_bytes=sum(len(text) for text in reports),
    )
    return {job.name: (read_at, job.status or "") for job in result.jobs if job.finished}
