"""Azure ML pipeline jobs, without I/O: node names and how a pipeline's status follows its
children.

A pipeline job (``jobType: Pipeline``) holds its steps in ``properties.jobs``, keyed by
*node name*. azure-ai-ml accepts a node name only when it is a lower-case Python identifier
(``is_valid_node_name`` in ``azure/ai/ml/_utils/utils.py``: ``^[a-z_][a-z0-9_]*$``), and
lower-cases any other name it is given. :func:`node_name_for` maps a circuit name onto one.

:func:`derive_pipeline_status` is how the local workspace moves a pipeline job along, as
Azure ML shows a pipeline run (``docs/workspace.md``, "Pipeline jobs", names the sources):

- a pipeline with a child still going is ``Running`` (``NotStarted`` before its first
  round), or stays ``CancelRequested`` once a cancel was asked for;
- a cancel asked for on the pipeline reaches every child that has not ended;
- without ``continue_on_step_failure`` the first failed child cancels the children that
  have not ended (the pipeline stops at the first failed step);
- once every child has ended: ``Canceled`` if the pipeline was canceled, else ``Failed``
  if any child failed, else ``Canceled`` if any child was canceled, else ``Completed``.
  A pipeline without children is ``Completed``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from amlwait.core.status import TERMINAL, JobStatus

NODE_NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*\Z")
MAX_NODE_NAME_LENGTH = 255
PIPELINE_JOB_TYPE = "Pipeline"
FAILED_STEPS_MESSAGE = (
    "Pipeline has some failed steps. See child run or execution logs for more details."
)
CANCELED_MESSAGE = "The pipeline job was canceled."


class NodeNameError(ValueError):
    """A circuit name that cannot become a pipeline node name."""


def node_name_for(circuit: str) -> str:
    """The node name of ``circuit``: lower-cased, each character outside ``[a-z0-9_]``
    replaced by ``_``, and ``_`` put in front of a leading digit (``PLANT001-C01`` →
    ``plant001_c01``; ``01A`` → ``_01a``). :class:`NodeNameError` for an empty name."""
    if not circuit:
        raise NodeNameError("an empty circuit name cannot name a pipeline node")
    name = re.sub(r"[^a-z0-9_]", "_", circuit.lower())
    if name[0].isdigit():
        name = "_" + name
    return name[:MAX_NODE_NAME_LENGTH]


def node_names_for(circuits: Iterable[str]) -> dict[str, str]:
    """Each circuit's node name; :class:`NodeNameError` naming two circuits whose node
    names collide (``A-1`` and ``a_1``)."""
    names: dict[str, str] = {}
    owner: dict[str, str] = {}
    for circuit in circuits:
        node = node_name_for(circuit)
        if node in owner and owner[node] != circuit:
            raise NodeNameError(
                f"circuits {owner[node]!r} and {circuit!r} both become pipeline node "
                f"{node!r}; node names are lower case with '_' (rename one circuit)"
            )
        owner[node] = circuit
        names[circuit] = node
    return names


def is_valid_node_name(name: str) -> bool:
    return len(name) <= MAX_NODE_NAME_LENGTH and bool(NODE_NAME_PATTERN.match(name))


@dataclass(frozen=True)
class PipelineStep:
    """What the pipeline's status follows from, in one round."""

    status: str
    """The pipeline's status to record now."""
    cancel_children: bool
    """Whether every child that has not ended is to be canceled now."""
    error: str | None = None
    """Why the pipeline ended badly (run history's ``error.message``), else ``None``."""


def derive_pipeline_status(
    current: str,
    child_statuses: Iterable[str],
    *,
    continue_on_step_failure: bool,
) -> PipelineStep:
    """The pipeline's next status from its ``current`` one and its children's (see the
    module docstring for the rules)."""
    statuses = list(child_statuses)
    canceling = current == JobStatus.CANCEL_REQUESTED.value
    failed = any(s == JobStatus.FAILED.value for s in statuses)
    all_ended = all(s in TERMINAL for s in statuses)
    stop_children = not all_ended and (canceling or (failed and not continue_on_step_failure))
    if not all_ended:
        if canceling:
            return PipelineStep(current, cancel_children=True)
        return PipelineStep(JobStatus.RUNNING.value, cancel_children=stop_children)
    if canceling:
        return PipelineStep(JobStatus.CANCELED.value, False, CANCELED_MESSAGE)
    if failed:
        return PipelineStep(JobStatus.FAILED.value, False, FAILED_STEPS_MESSAGE)
    if any(s == JobStatus.CANCELED.value for s in statuses):
        return PipelineStep(JobStatus.CANCELED.value, False, CANCELED_MESSAGE)
    return PipelineStep(JobStatus.COMPLETED.value, False)


@dataclass(frozen=True)
class StepRun:
    """One step of a pipeline job as run history shows it (times are ISO-8601 UTC text, as
    sent); ``node`` is its ``azureml.nodeid`` property when the service gives one."""

    run_id: str
    display_name: str
    node: str | None
    status: str
    reason: str | None
    created: str | None
    started: str | None
    ended: str | None
    error_code: str | None = None
