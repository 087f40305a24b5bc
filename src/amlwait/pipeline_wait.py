"""A finished wait on a pipeline job, made per circuit — the one code path of ``amlwait
wait`` and ``amlwait report`` on a pipeline manifest and of ``amlwait serve`` on a tagged
pipeline job.

After the wait on the pipeline job alone has ended (its outcome decides the exit code or
the task's result), :func:`per_circuit` reads the job's steps once through the job source
and returns the result with one entry per step (:func:`amlwait.pipeline_result.
steps_result`), so every report shows the circuits. A source reads steps when it has
:class:`StepSource`'s method (:class:`~amlwait.azureml.arm.ArmJobSource` reads run history's
``…/runs/{id}/children``); for any other source, or when the read fails or takes longer
than ``STEPS_READ_SECONDS``, the result is the pipeline job's own and
:attr:`PerCircuit.problem` says why in one scrubbed line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from amlwait.core.jobs import JobRef
from amlwait.core.pipeline import StepRun
from amlwait.core.source import JobSource, RunFactsUnavailable
from amlwait.errors import AmlwaitError
from amlwait.pipeline_result import steps_result
from amlwait.redact import scrub
from amlwait.result import WaitResult

STEPS_READ_SECONDS = 120.0
"""The read of the steps as a whole (discovery and every page) ends within this."""


@runtime_checkable
class StepSource(Protocol):
    async def pipeline_steps(self, pipeline: JobRef) -> tuple[list[StepRun], int]:
        """Every step of ``pipeline`` and the requests it took that the source's own
        ``requests_sent`` does not count."""
        ...


@dataclass(frozen=True)
class PerCircuit:
    """What :func:`per_circuit` made of a wait on a pipeline job."""

    result: WaitResult
    """Per step when the steps were read, else the pipeline job's own result."""
    problem: str | None = None
    """Why the steps could not be read (one line, scrubbed), else ``None``."""


async def per_circuit(
    result: WaitResult,
    pipeline: JobRef,
    source: JobSource,
    expected: Sequence[tuple[str, str]] = (),
    *,
    timeout: float = STEPS_READ_SECONDS,
) -> PerCircuit:
    """``result`` (the wait on ``pipeline`` alone) per step. ``expected`` is the manifest's
    ``(node name, circuit job name)`` list, empty when unknown (then every step run history
    shows is reported, named by its display name). The requests the read took are added to
    the result's."""
    if not isinstance(source, StepSource):
        return PerCircuit(result, _problem(pipeline, "this job source cannot read them"))
    before = source.requests_sent
    try:
        steps, data_plane = await asyncio.wait_for(source.pipeline_steps(pipeline), timeout)
    except (AmlwaitError, RunFactsUnavailable) as error:
        return PerCircuit(result, _problem(pipeline, str(error)))
    except (TimeoutError, asyncio.TimeoutError):
        return PerCircuit(result, _problem(pipeline, f"no answer within {timeout:g} s"))
    requests = source.requests_sent - before + data_plane
    return PerCircuit(steps_result(result, pipeline, expected, steps, requests))


def _problem(pipeline: JobRef, why: str) -> str:
    return scrub(
        f"the steps of pipeline job {pipeline.name} could not be read ({why}); "
        "the reports show the pipeline job alone"
    )
