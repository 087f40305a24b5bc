"""Submitting a :class:`~amlwait.submit.pipeline.PipelinePlan`: idempotent, nothing
half-done left unreported.

Plain ARM (:class:`PipelineArmSubmitter`), the requests in order:

1. ``GET WS/jobs/NAME``: found and a pipeline job → nothing is sent (``exists``, with
   its status); found and *not* a pipeline job → :class:`InputError` (exit 2) naming it:
   the name is taken, choose another ``--pipeline-name``.
2. Each step's component version: ``GET WS/components/C/versions/1`` (the spec's
   ``ComponentVersions_Get``); a 404 → ``PUT`` it (``ComponentVersions_CreateOrUpdate``).
   At most ``concurrency`` at once. A refusal stops here with :class:`PipelineRefused`
   (exit 1, the service's message, how many components were registered before it) — no
   pipeline job exists, so running again is safe.
3. ``PUT WS/jobs/NAME`` with the PipelineJob. A refusal is :class:`PipelineRefused` too.

Attempts: ``NAME``, ``NAME_r2``, … are read in turn until one is not found; the newest is
reported (``exists``). With ``retry_failed`` and the newest Failed or Canceled, its steps
are read from run history and ``NAME_rN+1`` is created with the steps that did not
complete (``resubmitted``).

Components are content-addressed (:mod:`~amlwait.submit.pipeline`), so a second run finds
them all with one GET each and creates nothing new.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from amlwait.core.attempts import attempt_name, split_attempt
from amlwait.core.jobs import JobRef
from amlwait.core.pipeline import PIPELINE_JOB_TYPE, StepRun
from amlwait.core.source import RunFactsUnavailable
from amlwait.core.status import JobStatus
from amlwait.errors import EXIT_FAILED, AmlwaitError, InputError, ServiceError
from amlwait.submit import code_upload
from amlwait.submit.pipeline import PipelinePlan, PipelineStep

MAX_ATTEMPTS = 99
RETRYABLE_STATUSES = frozenset({JobStatus.FAILED.value, JobStatus.CANCELED.value})


def attempt_of(name: str) -> int:
    return split_attempt(name)[1]


class PipelineOutcome(str, enum.Enum):
    SUBMITTED = "submitted"
    EXISTS = "exists"
    RESUBMITTED = "resubmitted"


@dataclass(frozen=True)
class PipelineSubmission:
    """``name``: the pipeline job the manifest names (the newest attempt); ``nodes``: its
    steps, when fewer than the plan's (a re-run, or an earlier re-run found)."""

    name: str
    outcome: PipelineOutcome
    status: str
    components_registered: int = 0
    components_found: int = 0
    nodes: tuple[str, ...] | None = None
    previous: str | None = None
    previous_status: str | None = None


class PipelineRefused(AmlwaitError):
    """The service refused a component or the pipeline job (exit 1): the message is its
    own, and says what was registered before."""

    exit_code = EXIT_FAILED


class ArmSender(code_upload.ArmSender, Protocol):
    """What submitting needs of :class:`~amlwait.azureml.arm.ArmJobSource`: what
    registering needs, and reading a job's definition."""

    async def get_job_definition(self, ref: JobRef) -> dict[str, Any] | None: ...


def check_is_pipeline(name: str, definition: dict[str, Any]) -> str:
    """The status of the existing job ``name``; :class:`InputError` when it is not a
    pipeline job (a name collision with an ordinary job)."""
    properties = definition.get("properties") or {}
    job_type = properties.get("jobType")
    if job_type != PIPELINE_JOB_TYPE:
        raise InputError(
            f"--pipeline-name: job {name} already exists and is a {job_type or 'pipeline step'} "
            "job, not a pipeline job; choose another --pipeline-name"
        )
    return str(properties.get("status") or "Unknown")


class PipelineArmSubmitter:
    def __init__(self, source: ArmSender, *, concurrency: int = 8) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.source = source
        self._semaphore = asyncio.Semaphore(concurrency)

    async def submit(self, plan: PipelinePlan, *, retry_failed: bool = False) -> PipelineSubmission:
        """Create the pipeline job, or report the newest attempt that exists (``NAME``,
        ``NAME_r2``, …); with ``retry_failed`` and that attempt Failed or Canceled, create
        the next attempt with only the steps that did not complete (read from run
        history, :mod:`amlwait.azureml.pipeline_steps`)."""
        newest: tuple[str, dict[str, Any]] | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            name = attempt_name(plan.name, attempt)
            found = await self.source.get_job_definition(JobRef(plan.batch.workspace, name))
            if found is None:
                break
            check_is_pipeline(name, found)
            newest = (name, found)
        if newest is None:
            return await self._create(plan, plan.name, plan.steps)
        name, definition = newest
        status = check_is_pipeline(name, definition)
        nodes = tuple((definition.get("properties") or {}).get("jobs") or {})
        if not (retry_failed and status in RETRYABLE_STATUSES):
            return PipelineSubmission(name, PipelineOutcome.EXISTS, status, nodes=nodes)
        if attempt_of(name) >= MAX_ATTEMPTS:
            raise InputError(f"{name} is attempt {MAX_ATTEMPTS}; no more re-runs")
        runs = await self._steps(JobRef(plan.batch.workspace, name))
        done = {r.node or r.display_name for r in runs if r.status == "Completed"}
        done |= {r.display_name for r in runs if r.status == "Completed"}
        again = [
            step
            for step in plan.steps
            if step.node in nodes and step.node not in done and step.job.base_name not in done
        ]
        if not again:
            return PipelineSubmission(name, PipelineOutcome.EXISTS, status, nodes=nodes)
        next_name = attempt_name(plan.name, attempt_of(name) + 1)
        created = await self._create(plan, next_name, again)
        return dataclasses.replace(
            created,
            outcome=PipelineOutcome.RESUBMITTED,
            nodes=tuple(step.node for step in again),
            previous=name,
            previous_status=status,
        )

    async def _steps(self, pipeline: JobRef) -> list[StepRun]:
        """The steps of ``pipeline`` from run history; :class:`PipelineRefused` (exit 1)
        when they cannot be read (nothing is submitted then)."""
        from amlwait.azureml.arm import ArmJobSource
        from amlwait.azureml.pipeline_steps import read_steps

        if not isinstance(self.source, ArmJobSource):
            raise InputError("--retry-failed with --as-pipeline needs the ARM job source")
        try:
            steps, _ = await read_steps(self.source, pipeline)
        except RunFactsUnavailable as error:
            raise PipelineRefused(
                f"--retry-failed: the steps of {pipeline.name} could not be read ({error}); "
                "nothing was submitted"
            ) from None
        return steps

    async def _create(
        self, plan: PipelinePlan, name: str, steps: Sequence[PipelineStep]
    ) -> PipelineSubmission:
        ref = JobRef(plan.batch.workspace, name)
        created: list[str] = []
        found: list[str] = []
        unique = {step.component_name: step for step in steps}
        outcomes = await asyncio.gather(
            *(self._component(plan, step, created, found) for step in unique.values()),
            return_exceptions=True,
        )
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        if refused:
            error = refused[0]
            if not isinstance(error, AmlwaitError):
                raise error
            raise PipelineRefused(
                f"pipeline job {name} was not created: {error} ({len(created)} of "
                f"{len(unique)} components registered before it; no job was created, run "
                "again once fixed)"
            )
        try:
            status = await self._put(ref, plan.properties(steps, name=name))
        except ServiceError as error:
            raise PipelineRefused(
                f"pipeline job {name} was not created: {error} ({len(created)} "
                "components registered, which a later run reuses)"
            ) from None
        return PipelineSubmission(name, PipelineOutcome.SUBMITTED, status, len(created), len(found))

    async def _component(
        self, plan: PipelinePlan, step: PipelineStep, created: list[str], found: list[str]
    ) -> None:
        url = self.source.endpoint + plan.component_id(step)
        params = {"api-version": self.source.api_version}
        what = f"component {step.component_name} ({step.job.key})"
        async with self._semaphore:
            answer = await self.source._send("GET", url, params=params, job=what)
            if answer.status_code == 200:
                found.append(step.component_name)
                return
            put = await self.source._send(
                "PUT",
                url,
                params=params,
                json={"properties": dict(step.component)},
                job=what,
                ok_statuses=(200, 201),
            )
            if put.status_code == 404:
                raise ServiceError(f"PUT {what} was refused: 404 {_message(put)}", job=what)
            created.append(step.component_name)

    async def _put(self, ref: JobRef, properties: dict[str, Any]) -> str:
        response = await self.source._send(
            "PUT",
            self.source.endpoint + f"{ref.workspace.arm_path}/jobs/{ref.name}",
            params={"api-version": self.source.api_version},
            json={"properties": properties},
            job=ref.name,
            ok_statuses=(200, 201),
        )
        if response.status_code == 404:
            raise ServiceError(f"PUT {ref.name} was refused: 404 {_message(response)}")
        body = response.json()
        return str((body.get("properties") or {}).get("status") or "Unknown")


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or response.reason_phrase)
    except ValueError:
        return response.reason_phrase
