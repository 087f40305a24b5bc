"""``wait`` / ``report`` on a manifest naming a pipeline job: after the pipeline job's own
wait, its steps are read once from run history (:mod:`amlwait.azureml.pipeline_steps`)
and the reports show one entry per circuit (:mod:`amlwait.pipeline_result`).

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
from amlwait.core.source import RunFactsUnavailable
from amlwait.errors import AmlwaitError
from amlwait.redact import scrub
from amlwait.result import WaitResult


def with_steps(
    result: WaitResult,
    manifest: Manifest,
    options: dict[str, Any],
    budget: RequestBudget,
    trouble: Callable[[str], None],
) -> WaitResult:
    """``result`` per circuit, or as it is (with a line) when the steps cannot be read."""
    from amlwait.azureml.pipeline_steps import read_steps
    from amlwait.pipeline_result import per_step_result

    source = arm_source_from_flags(options, budget, trouble)
    pipeline = manifest.jobs[0]

    async def main() -> WaitResult:
        async with source:
            steps, data_plane = await read_steps(source, pipeline)
            return per_step_result(result, manifest, steps, source.requests_sent + data_plane)

    try:
        return run_with_signals(main, lambda: None)
    except (AmlwaitError, RunFactsUnavailable) as error:
        print(
            scrub(
                f"the steps of pipeline job {pipeline.name} could not be read ({error}); "
                "the reports show the pipeline job alone"
            ),
            flush=True,
        )
        return result
