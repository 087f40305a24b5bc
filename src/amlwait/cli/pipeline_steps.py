"""``wait`` / ``report`` on a manifest naming a pipeline job: after the pipeline job's own
wait, its steps are read once from run history and the reports show one entry per circuit
(:mod:`amlwait.pipeline_wait`, the path ``amlwait serve`` takes too).

When the steps cannot be read, one line says so and the reports show the pipeline job
alone; the exit code is the pipeline job's either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amlwait.cli.options import arm_source_from_flags
from amlwait.cli.runtime import run_with_signals
from amlwait.core.budget import RequestBudget
from amlwait.core.manifest import Manifest
from amlwait.result import WaitResult


def with_steps(
    result: WaitResult,
    manifest: Manifest,
    options: dict[str, Any],
    budget: RequestBudget,
    trouble: Callable[[str], None],
) -> WaitResult:
    """``result`` per circuit, or as it is (with a line) when the steps cannot be read
    (:func:`amlwait.pipeline_wait.per_circuit`, as ``amlwait serve`` does it)."""
    from amlwait.pipeline_wait import PerCircuit, per_circuit

    source = arm_source_from_flags(options, budget, trouble)
    pipeline = manifest.jobs[0]

    async def main() -> PerCircuit:
        async with source:
            return await per_circuit(result, pipeline, source, manifest.steps)

    made = run_with_signals(main, lambda: None)
    if made.problem is not None:
        print(made.problem, flush=True)
    return made.result
