"""A batch as ONE Azure ML pipeline job (``submit --as-pipeline``) — no I/O.

Each circuit's command job (the ARM ``properties`` :mod:`~amlwait.submit.plan` made for it:
same substitutions, tags, compute, environment, code) becomes:

- a **component version** holding its definition, ``WS/components/NAME/versions/1``, with
  ``componentSpec`` = ``{"name", "version": "1", "type": "command", "command",
  "environment", "code"?, "inputs": {NAME: {"type"}}, "outputs": {NAME: {"type"}},
  "is_deterministic": false}``. ``NAME`` is ``amlwait_`` and 16 hex digits of the spec's
  SHA-256, so the same definition is the same version (registered once, found again by a
  GET) and a changed one a new version. ``is_deterministic: false`` because Azure ML reuses
  a deterministic step's earlier result instead of running it again ("reuse" of pipeline
  steps), and a re-run of a circuit must really run;
- a **node** of the pipeline, named after the circuit (:func:`amlwait.core.pipeline.
  node_name_for`: ``PLANT001/CIRCUIT01`` → ``plant001_circuit01``), as azure-ai-ml's
  ``PipelineJob._to_rest_object`` writes a command node: ``{"type": "command", "name",
  "display_name": the circuit's job name, "componentId", "tags", "environment_variables",
  "computeId", "inputs": {NAME: {"job_input_type", "value" | "uri", "mode"?}}, "outputs":
  {NAME: {"job_output_type", "uri"?, "mode"?}}, "resources": {"instance_count",
  "instance_type", "shm_size"}?, "limits": {"job_limits_type", "timeout"}?}``.

The pipeline job's ``properties``: ``{"jobType": "Pipeline", "displayName": NAME,
"experimentName": the circuits' experiment when they share one, else "Default", "tags":
{BATCH_TAG: N, "date": ISO date}, "jobs": {node: …}, "settings":
{"continue_on_step_failure": true}, "inputs": {}, "outputs": {}, "properties": {},
"isArchived": false}`` — a failing circuit does not stop the others, and the pipeline ends
Completed only if every step did.

The pipeline's name comes from ``--pipeline-name`` (default :data:`DEFAULT_PIPELINE_PATTERN`,
``{date:…}`` filled in, upper-cased) and must be a valid job name with room for ``_r99``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from amlwait.core.jobs import JOB_NAME_PATTERN
from amlwait.core.pipeline import PIPELINE_JOB_TYPE, NodeNameError, node_names_for
from amlwait.errors import InputError
from amlwait.submit.plan import MAX_BASE_NAME, Batch, PlannedJob
from amlwait.submit.template import substitute

DEFAULT_PIPELINE_PATTERN = "TRAINING_{date:%Y_%m_%d}"
COMPONENT_PREFIX = "amlwait_"
COMPONENT_VERSION = "1"
_LITERAL = "literal"


@dataclass(frozen=True)
class PipelineStep:
    """One circuit as a step: its planned command job, node name, component and node."""

    job: PlannedJob
    node: str
    component_name: str
    component: Mapping[str, Any]
    """The ``ComponentVersion`` properties to PUT (``{"componentSpec": …}``)."""
    body: Mapping[str, Any]
    """The node, as ``properties.jobs[node]``."""


@dataclass(frozen=True)
class PipelinePlan:
    name: str
    batch: Batch
    steps: tuple[PipelineStep, ...]

    def properties(
        self, steps: Sequence[PipelineStep] | None = None, *, name: str | None = None
    ) -> dict[str, Any]:
        """The PipelineJob ``properties`` with ``steps`` (default: all of them), displayed
        as ``name`` (default: the plan's; a re-run is ``NAME_r2``)."""
        chosen = self.steps if steps is None else tuple(steps)
        experiments = {str(s.job.properties.get("experimentName") or "") for s in chosen}
        experiment = experiments.pop() if len(experiments) == 1 else ""
        return {
            "jobType": PIPELINE_JOB_TYPE,
            "displayName": name or self.name,
            "experimentName": experiment or "Default",
            "tags": {self.batch.tag: str(len(chosen)), "date": self.batch.run_date.isoformat()},
            "jobs": {step.node: dict(step.body) for step in chosen},
            "settings": {"continue_on_step_failure": True},
            "inputs": {},
            "outputs": {},
            "properties": {},
            "isArchived": False,
        }

    def component_id(self, step: PipelineStep) -> str:
        return component_id(self.batch, step.component_name)


def pipeline_name(pattern: str, run_date: date) -> str:
    """``pattern`` with ``{date…}`` filled in, upper-cased; :class:`InputError` naming the
    pattern when the result is not a valid job name (``_r99`` included)."""
    values = {"date": run_date}
    name = substitute(pattern, values, "--pipeline-name", "the pipeline job").upper()
    if len(name) > MAX_BASE_NAME or not JOB_NAME_PATTERN.match(name):
        raise InputError(
            f"--pipeline-name {pattern!r} gives {name!r}, which is not a valid Azure ML job "
            f"name: letters, digits, '-' and '_', starting with a letter or digit, at most "
            f"{MAX_BASE_NAME} characters"
        )
    return name


def component_id(batch: Batch, component_name: str) -> str:
    return f"{batch.workspace.arm_path}/components/{component_name}/versions/{COMPONENT_VERSION}"


def plan_pipeline(batch: Batch, name: str) -> PipelinePlan:
    """The pipeline job of ``batch`` named ``name``; :class:`InputError` when two circuits
    would share a node name."""
    try:
        nodes = node_names_for(job.key for job in batch.jobs)
    except NodeNameError as error:
        raise InputError(f"--as-pipeline: {error}") from None
    steps = []
    for job in batch.jobs:
        spec = _component_spec(job.properties)
        component_name = COMPONENT_PREFIX + _digest(spec)
        spec = {"name": component_name, "version": COMPONENT_VERSION, **spec}
        body = _node(job, nodes[job.key], component_id(batch, component_name))
        steps.append(
            PipelineStep(job, nodes[job.key], component_name, {"componentSpec": spec}, body)
        )
    return PipelinePlan(name, batch, tuple(steps))


def _digest(spec: Mapping[str, Any]) -> str:
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _component_spec(properties: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "command",
        "command": properties["command"],
        "environment": properties["environmentId"],
        "is_deterministic": False,
    }
    if properties.get("codeId"):
        spec["code"] = properties["codeId"]
    inputs = properties.get("inputs") or {}
    if inputs:
        spec["inputs"] = {
            name: {"type": "string" if i["jobInputType"] == _LITERAL else i["jobInputType"]}
            for name, i in inputs.items()
        }
    outputs = properties.get("outputs") or {}
    if outputs:
        spec["outputs"] = {name: {"type": o["jobOutputType"]} for name, o in outputs.items()}
    return spec


def _node(job: PlannedJob, node: str, component: str) -> dict[str, Any]:
    properties = job.properties
    body: dict[str, Any] = {
        "type": "command",
        "name": node,
        "display_name": job.base_name,
        "componentId": component,
        "tags": dict(properties.get("tags") or {}),
    }
    if properties.get("environmentVariables"):
        body["environment_variables"] = dict(properties["environmentVariables"])
    if properties.get("computeId"):
        body["computeId"] = properties["computeId"]
    if properties.get("inputs"):
        body["inputs"] = {
            name: _snake_io(i, "jobInputType", "job_input_type")
            for name, i in properties["inputs"].items()
        }
    if properties.get("outputs"):
        body["outputs"] = {
            name: _snake_io(o, "jobOutputType", "job_output_type")
            for name, o in properties["outputs"].items()
        }
    resources = properties.get("resources")
    if resources:
        body["resources"] = {_RESOURCE_KEYS.get(k, k): v for k, v in resources.items()}
    limits = properties.get("limits")
    if limits:
        body["limits"] = {_LIMIT_KEYS.get(k, k): v for k, v in limits.items()}
    return body


_RESOURCE_KEYS = {
    "instanceCount": "instance_count",
    "instanceType": "instance_type",
    "shmSize": "shm_size",
}
_LIMIT_KEYS = {"jobLimitsType": "job_limits_type"}


def _snake_io(item: Mapping[str, Any], camel: str, snake: str) -> dict[str, Any]:
    converted = {k: v for k, v in item.items() if k != camel}
    converted[snake] = item[camel]
    return converted
