"""The job manifest the training stage writes and the wait step reads.

Accepted forms::

    {"jobs": ["PLANT001_CIRCUIT01_2025_11_01", ...]}
    {"jobs": [{"name": "...", "workspace": "...", "resource_group": "...",
               "subscription": "..."}, ...],
     "tag": "amlwait-batch-1234"}

    {"jobs": ["TRAINING_2025_11_01"], "pipeline": "TRAINING_2025_11_01",
     "steps": {"plant001_circuit01": "PLANT001_CIRCUIT01_2025_11_01", ...},
     "tag": "amlwait-batch-1234"}

The third form names a **pipeline job** (``submit --as-pipeline``): ``jobs`` lists the
pipeline job alone (so a reader that knows nothing of pipelines still waits on the right
job), ``pipeline`` repeats its name, and ``steps`` maps each step's node name to its
circuit's job name (the step's display name), for the per-circuit report. ``pipeline``
must be the one job ``jobs`` lists; ``steps`` needs ``pipeline``.

Entries may mix both forms; an object's missing connection fields fall back to the
defaults given on the command line. ``tag`` names a tag *key* every listed job carries,
so the waiter can read the batch with paged LIST calls. Duplicate jobs, invalid names,
an empty list, unknown fields and a subscription, resource group or workspace that breaks
Azure's naming rules (:func:`~amlwait.core.jobs.workspace_ref_problem`; each becomes a segment
of an ARM URL, so nothing path-like may pass) are errors (:class:`~amlwait.errors.ManifestError`),
each reported as one line naming the file and the entry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError

from amlwait.core.jobs import (
    JOB_NAME_PATTERN,
    JobRef,
    WorkspaceRef,
    tag_key_problem,
    workspace_ref_problem,
)
from amlwait.errors import ManifestError


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    workspace: str | None = None
    resource_group: str | None = None
    subscription: str | None = None


class ManifestDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    jobs: list[str | ManifestEntry]
    tag: str | None = None
    pipeline: str | None = None
    steps: dict[str, str] | None = None


@dataclass(frozen=True)
class ConnectionDefaults:
    subscription: str | None = None
    resource_group: str | None = None
    workspace: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: every job resolved to its workspace."""

    jobs: tuple[JobRef, ...]
    tag: str | None
    source: str
    pipeline: str | None = None
    """The pipeline job's name when the manifest names one (then ``jobs`` is that job)."""
    steps: tuple[tuple[str, str], ...] = ()
    """``(node name, circuit job name)`` of each step of the pipeline, in order."""

    @property
    def workspaces(self) -> list[WorkspaceRef]:
        return sorted({job.workspace for job in self.jobs})

    def to_document(self) -> dict[str, object]:
        """The manifest in its written form (objects only where a job is elsewhere)."""
        only = self.workspaces[0] if len(self.workspaces) == 1 else None
        jobs: list[object] = []
        for job in self.jobs:
            if job.workspace == only:
                jobs.append(job.name)
            else:
                jobs.append(
                    {
                        "name": job.name,
                        "workspace": job.workspace.workspace,
                        "resource_group": job.workspace.resource_group,
                        "subscription": job.workspace.subscription,
                    }
                )
        document: dict[str, object] = {"jobs": jobs}
        if self.pipeline is not None:
            document["pipeline"] = self.pipeline
            document["steps"] = dict(self.steps)
        if self.tag is not None:
            document["tag"] = self.tag
        return document


def _where(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "ManifestEntry"):
            continue  # pydantic's union branch names
        else:
            text += f".{part}" if text else str(part)
    return text or "the document"


def _describe(error: ValidationError, source: str, *, entry: bool = False) -> str:
    errors = error.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    where = _where(first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        allowed = (
            "name, workspace, resource_group, subscription"
            if entry
            else "jobs, tag, pipeline, steps"
        )
        return f"{source}: unknown field {where!s}; allowed fields are {allowed}"
    if kind == "missing":
        return f"{source}: {where} is missing"
    return f"{source}: {where}: {first['msg']}"


def parse_manifest(
    text: str, source: str, defaults: ConnectionDefaults, *, arm_names: bool = True
) -> Manifest:
    """Validate a manifest's text; ``source`` names it in error messages.

    With ``arm_names`` (the default, for anything that sends requests) each job's
    subscription, resource group and workspace must follow Azure's naming rules; only a
    renderer that writes them into pipeline YAML as placeholders passes ``False``.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"{source}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            'expected {"jobs": ["NAME", ...]}'
        ) from None
    if not isinstance(raw, dict):
        raise ManifestError(f'{source}: expected a JSON object like {{"jobs": ["NAME", ...]}}')
    if "jobs" in raw and not isinstance(raw["jobs"], list):
        raise ManifestError(f"{source}: jobs must be a list of job names or objects")
    if isinstance(raw.get("jobs"), list):
        # Report the entry at fault by its index, whatever pydantic's union says.
        for index, entry in enumerate(raw["jobs"]):
            if not isinstance(entry, (str, dict)):
                raise ManifestError(
                    f"{source}: jobs[{index}] must be a job name or an object with a name, "
                    f"not {type(entry).__name__}"
                )
            if isinstance(entry, dict):
                try:
                    ManifestEntry.model_validate(entry)
                except ValidationError as error:
                    detail = _describe(error, source, entry=True).split(": ", 1)[1]
                    raise ManifestError(f"{source}: jobs[{index}]: {detail}") from None
    try:
        document = ManifestDocument.model_validate(raw)
    except ValidationError as error:
        raise ManifestError(_describe(error, source)) from None
    return _resolve(document, source, defaults, arm_names=arm_names)


def _entry_ref(
    entry: str | ManifestEntry,
    index: int,
    source: str,
    defaults: ConnectionDefaults,
    *,
    arm_names: bool,
) -> JobRef:
    """``jobs[index]`` as a job reference: a valid name, each connection field from the
    entry or the command-line default, every ARM path segment valid (unless ``arm_names``
    is off, for rendering placeholders); one ManifestError line otherwise."""
    if isinstance(entry, str):
        entry = ManifestEntry(name=entry)
    if not JOB_NAME_PATTERN.match(entry.name):
        raise ManifestError(
            f"{source}: jobs[{index}] {entry.name!r} is not a valid Azure ML job name "
            "(letters, digits, '-' and '_', starting with a letter or digit, at most 255)"
        )
    missing = []
    subscription = entry.subscription or defaults.subscription
    resource_group = entry.resource_group or defaults.resource_group
    workspace = entry.workspace or defaults.workspace
    if not subscription:
        missing.append("subscription (--subscription or AZURE_SUBSCRIPTION_ID)")
    if not resource_group:
        missing.append("resource group (-g/--resource-group or AZURE_RESOURCE_GROUP)")
    if not workspace:
        missing.append("workspace (-w/--workspace-name or AZUREML_WORKSPACE_NAME)")
    if missing:
        raise ManifestError(
            f"{source}: jobs[{index}] {entry.name}: no {', no '.join(missing)}; "
            "give it on the command line or in the entry"
        )
    assert subscription and resource_group and workspace
    problem = workspace_ref_problem(subscription, resource_group, workspace)
    if problem is not None and arm_names:
        raise ManifestError(
            f"{source}: jobs[{index}] {entry.name}: {problem}; fix the entry or the "
            "command-line default"
        )
    ref = JobRef(WorkspaceRef(subscription, resource_group, workspace), entry.name)
    return ref


def _resolve(
    document: ManifestDocument, source: str, defaults: ConnectionDefaults, *, arm_names: bool
) -> Manifest:
    if not document.jobs:
        raise ManifestError(f"{source}: the job list is empty; nothing to wait for")
    if document.tag is not None:
        problem = tag_key_problem(document.tag)
        if problem:
            raise ManifestError(f"{source}: tag {document.tag!r} {problem}")
    refs: list[JobRef] = []
    seen: dict[JobRef, int] = {}
    for index, entry in enumerate(document.jobs):
        ref = _entry_ref(entry, index, source, defaults, arm_names=arm_names)
        if ref in seen:
            raise ManifestError(
                f"{source}: jobs[{index}] {ref.name} is listed twice (first at jobs[{seen[ref]}])"
            )
        seen[ref] = index
        refs.append(ref)
    if document.pipeline is None and document.steps is not None:
        raise ManifestError(f"{source}: steps needs pipeline (the pipeline job's name)")
    if document.pipeline is not None and [r.name for r in refs] != [document.pipeline]:
        raise ManifestError(
            f"{source}: pipeline {document.pipeline!r} must be the one job jobs lists, "
            f"not {[r.name for r in refs]}"
        )
    return Manifest(
        jobs=tuple(refs),
        tag=document.tag,
        source=source,
        pipeline=document.pipeline,
        steps=tuple((document.steps or {}).items()),
    )
