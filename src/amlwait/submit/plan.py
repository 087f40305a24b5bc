"""The batch to submit: one job per circuit, named, tagged and converted — no I/O.

Names come from the name pattern (default :data:`DEFAULT_NAME_PATTERN`), upper-cased:
``PLANT001_CIRCUIT01_2025_11_01``. A name must be a valid Azure ML job name and a valid
Azure DevOps matrix leg name (``^[A-Za-z][A-Za-z0-9_]{0,99}$``) with room for a re-run
suffix up to ``_r99``; two circuits with one name are an error. Nothing is sent before
every circuit has passed all of this.

Every job carries the tags ``plant``, ``circuit``, ``date`` (ISO), the batch tag
``amlwait-batch-<12 hex digits>`` (value: the number of jobs in the batch), and the
template's own tags (amlwait's win on a clash). The batch tag's digits are a SHA-256 of
the workspace, the date and the sorted base job names, so running the same command again
tags the same way, and ``amlwait wait`` can read the whole batch with paged LIST calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from amlwait.core.jobs import JOB_NAME_PATTERN, WorkspaceRef, tag_key_problem
from amlwait.devops.pipelines.legs import LEG_NAME_PATTERN
from amlwait.errors import InputError
from amlwait.submit.arm_job import JobSpecError, command_job_properties
from amlwait.submit.circuits import Circuit
from amlwait.submit.template import JobTemplate, placeholder_values, substitute

DEFAULT_NAME_PATTERN = "{plant}_{circuit}_{date:%Y_%m_%d}"
BATCH_TAG_PREFIX = "amlwait-batch-"
MAX_BASE_NAME = 96  # leaves room for "_r99" within the 100-character leg-name limit
MAX_TAGS = 50
MAX_TAG_VALUE = 1000


@dataclass(frozen=True)
class PlannedJob:
    """One circuit's job: its first-attempt name and the ARM properties to PUT."""

    circuit: Circuit
    base_name: str
    properties: Mapping[str, Any]

    @property
    def key(self) -> str:
        return self.circuit.key

    @property
    def command(self) -> str:
        return str(self.properties["command"])


@dataclass(frozen=True)
class Batch:
    workspace: WorkspaceRef
    run_date: date
    tag: str
    jobs: tuple[PlannedJob, ...]


def batch_tag(workspace: WorkspaceRef, run_date: date, base_names: Sequence[str]) -> str:
    """``amlwait-batch-`` and 12 hex digits, the same for the same workspace, date and jobs."""
    text = "\n".join([str(workspace), run_date.isoformat(), *sorted(base_names)])
    return BATCH_TAG_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def job_name(pattern: str, circuit: Circuit, run_date: date) -> str:
    """The first-attempt job name of ``circuit``: the pattern filled in, upper-cased."""
    values = placeholder_values(circuit.plant, circuit.circuit, run_date, circuit.params)
    name = substitute(pattern, values, "--name-pattern", circuit.key).upper()
    if len(name) > MAX_BASE_NAME:
        raise InputError(
            f"--name-pattern gives a {len(name)}-character name for {circuit.key}; at most "
            f"{MAX_BASE_NAME} leave room for re-run suffixes within the 100-character "
            "matrix leg name"
        )
    if not (JOB_NAME_PATTERN.match(name) and LEG_NAME_PATTERN.match(name)):
        raise InputError(
            f"--name-pattern gives {name!r} for {circuit.key}, which is not a valid job name: "
            "letters, digits and '_', starting with a letter"
        )
    return name


def plan_batch(
    circuits: Sequence[Circuit],
    template: JobTemplate,
    *,
    circuits_source: str,
    run_date: date,
    workspace: WorkspaceRef,
    name_pattern: str = DEFAULT_NAME_PATTERN,
) -> Batch:
    """Name, render and convert every circuit's job, or raise the first problem found."""
    if not circuits:
        raise InputError("no circuits selected; nothing to submit")
    names: dict[str, Circuit] = {}
    for circuit in circuits:
        name = job_name(name_pattern, circuit, run_date)
        if name in names:
            other = names[name]
            raise InputError(
                f"{circuits_source}:{circuit.line}: {circuit.key} and {other.key} (line "
                f"{other.line}) both get the job name {name}; rename one or change "
                "--name-pattern"
            )
        names[name] = circuit
    tag = batch_tag(workspace, run_date, list(names))
    jobs = tuple(
        PlannedJob(
            circuit, name, _properties(template, circuit, run_date, workspace, tag, len(names))
        )
        for name, circuit in names.items()
    )
    return Batch(workspace, run_date, tag, jobs)


def _properties(
    template: JobTemplate,
    circuit: Circuit,
    run_date: date,
    workspace: WorkspaceRef,
    tag: str,
    size: int,
) -> dict[str, Any]:
    values = placeholder_values(circuit.plant, circuit.circuit, run_date, circuit.params)
    job = template.render(values, circuit.key)
    try:
        properties = command_job_properties(job, base_dir=template.folder, workspace=workspace)
    except JobSpecError as error:
        raise template.document.error(error.path, str(error)) from None
    tags = dict(properties.get("tags") or {})
    tags.update(
        {
            "plant": circuit.plant,
            "circuit": circuit.circuit,
            "date": run_date.isoformat(),
            tag: str(size),
        }
    )
    _check_tags(tags, template.source, circuit)
    properties["tags"] = tags
    return properties


def _check_tags(tags: Mapping[str, str], source: str, circuit: Circuit) -> None:
    if len(tags) > MAX_TAGS:
        raise InputError(
            f"{source}: {circuit.key} would carry {len(tags)} tags with amlwait's own four; "
            f"Azure ML allows {MAX_TAGS}"
        )
    for key, value in tags.items():
        problem = tag_key_problem(key)
        if problem:
            raise InputError(f"{source}: tags: key {key!r} {problem}")
        if len(value) > MAX_TAG_VALUE:
            raise InputError(
                f"{source}: tags.{key} is {len(value)} characters for {circuit.key}; Azure ML "
                f"allows {MAX_TAG_VALUE}"
            )
