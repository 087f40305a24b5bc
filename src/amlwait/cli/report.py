"""``amlwait report MANIFEST``: read every job (or the pipeline job and its steps) ONCE and
write the same reports ``wait`` writes, without waiting.

It is ``amlwait wait MANIFEST --timeout 0`` with wait's other defaults: each job is read
once, and the exit code is wait's: 0 all Completed · 1 a job Failed or was Canceled (or
missing) · 2 bad input or credentials · 3 a job has not finished yet. For a manifest of
the pipeline form the exit code is the pipeline job's, and the reports show one entry per
circuit (its step). Meant for the short agent job after ``AzureMLJobWaitTask@1``
(``amlwait render pipeline``), when the pipeline job has ended.
"""

from __future__ import annotations

from typing import Any

import click

from amlwait.cli.options import connection_options

# wait's defaults for what a single read does not use (polling never happens at --timeout 0)
_WAIT_DEFAULTS: dict[str, Any] = {
    "timeout": 0.0,
    "poll_interval": 15.0,
    "max_poll_interval": 120.0,
    "not_found_grace": 300.0,
    "not_responding_grace": 900.0,
    "fail_fast": False,
    "cancel_remaining": False,
    "cancel_on_interrupt": False,
    "retries": 0,
    "update_manifest": None,
    "max_requests_per_second": 10.0,
}


@click.command()
@click.argument("manifest", metavar="MANIFEST")
@connection_options
@click.option("--json", "json_path", metavar="FILE", help="Write the result as JSON.")
@click.option(
    "--junit", "junit_path", metavar="FILE", help="Write JUnit XML (one test case per job)."
)
@click.option("--summary", "summary_path", metavar="FILE", help="Write a Markdown summary.")
@click.option("--html", "html_path", metavar="FILE", help="Write an HTML report.")
@click.option(
    "--azure-devops/--no-azure-devops",
    "azure_devops",
    default=None,
    help="Speak Azure Pipelines logging commands (default: when TF_BUILD=True).",
)
def report(manifest: str, **options: Any) -> int:
    """Read every job in MANIFEST once and write the reports; no waiting.

    \b
    Exit codes (as `amlwait wait --timeout 0`): 0 all Completed · 1 a job Failed, was
    Canceled or is missing · 2 bad input or credentials · 3 a job has not finished.
    """
    from amlwait.cli.wait import run_wait

    return run_wait(manifest, **{**_WAIT_DEFAULTS, **options})


__all__ = ["report"]
