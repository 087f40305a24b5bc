"""``amlwait submit``: the click shell around :mod:`amlwait.submit.command`.

Attach it with ``cli.add_command(submit)`` after ``connection_options`` is defined in
:mod:`amlwait.cli.options`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from amlwait.cli.options import connection_options


@click.command()
@click.option(
    "--circuits",
    required=True,
    metavar="FILE",
    help="YAML: plants: {PLANT: {circuits: {CIRCUIT: {param: value}} or [CIRCUIT, ...]}}.",
)
@click.option(
    "--job",
    required=True,
    metavar="FILE",
    help="Azure ML command job YAML; {plant}, {circuit}, {date} and circuit parameters "
    "are filled in, ${{...}} is left alone.",
)
@click.option(
    "--date",
    "run_date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="The run date (default: today, UTC).",
)
@click.option(
    "--only",
    multiple=True,
    metavar="PLANT[/CIRCUIT]",
    help="Submit only these circuits (repeatable; a plant alone means all its circuits).",
)
@click.option(
    "--name-pattern",
    default="{plant}_{circuit}_{date:%Y_%m_%d}",  # plan.DEFAULT_NAME_PATTERN
    show_default=True,
    metavar="PATTERN",
    help="Job name pattern, upper-cased; re-runs add _r2, _r3, …",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Circuits submitted at once.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Resubmit circuits whose newest job Failed or was Canceled (as NAME_r2, …).",
)
@click.option(
    "--via",
    type=click.Choice(["arm", "azure-ai-ml"]),
    default="arm",
    show_default=True,
    help="arm: plain ARM requests (a local code folder is uploaded and registered as a code "
    "asset once per batch); azure-ai-ml: the SDK uploads the code and creates each job "
    "(pip install 'amlwait[azure]').",
)
@click.option(
    "--no-code-upload",
    is_flag=True,
    help="Send a local code folder as a file:// URI instead of uploading it as a code asset "
    "(only the local workspace on this machine reads it; refused for other endpoints).",
)
@click.option(
    "--as-pipeline",
    is_flag=True,
    help="Submit the batch as ONE Azure ML pipeline job, one step per circuit "
    "(continue_on_step_failure), for `amlwait render pipeline`.",
)
@click.option(
    "--pipeline-name",
    default="TRAINING_{date:%Y_%m_%d}",  # pipeline.DEFAULT_PIPELINE_PATTERN
    show_default=True,
    metavar="PATTERN",
    help="With --as-pipeline: the pipeline job's name, upper-cased; an existing pipeline "
    "job of that name is reported, not resubmitted.",
)
@click.option("--dry-run", is_flag=True, help="Print the jobs that would be created; send nothing.")
@click.option(
    "--matrix-variable",
    metavar="NAME",
    help="Also print NAME_0…, NAME_count matrix output variables (as `amlwait matrix`).",
)
@click.option(
    "--output",
    metavar="FILE",
    help="The manifest to write for `amlwait wait` (required unless --dry-run).",
)
@connection_options
def submit(run_date: datetime | None, **options: Any) -> int:
    """Submit one Azure ML job per plant and circuit, and write the manifest.

    \b
    Idempotent: a circuit whose job already exists is left alone (with --retry-failed, a
    Failed or Canceled one gets its next attempt, NAME_r2, …), so running the same command
    again completes a batch. Exit codes: 0 every circuit has a job · 1 a circuit could not
    be submitted · 2 bad input (nothing sent) · 130 interrupted.
    """
    from amlwait.submit.command import run_submit

    return run_submit(run_date=run_date.date() if run_date else None, **options)


__all__ = ["submit"]
