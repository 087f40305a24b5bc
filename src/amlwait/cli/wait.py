"""What ``amlwait wait`` does behind the click layer: check the report paths, build the
wait from the flags, run it with SIGINT/SIGTERM stopping it, then report and exit.

Exit codes: :data:`EXIT_CODES` maps the batch outcome to the process's exit code.

Every exit path once the wait has started writes the reports asked for: a wait that broke
(a refused token mid-wait, a request refused for good, an internal error) reports outcome
``error`` with every job as last read, then its error goes on to the one line on stderr
and its own exit code (2, or 70). Bad input found before the start writes none.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlwait.cli.options import arm_source_from_flags, manifest_from_flags, polling_from_flags
from amlwait.cli.runtime import (
    check_output_path,
    run_with_signals,
    write_json_atomically,
    write_text_atomically,
)
from amlwait.console import LiveReporter, PlainReporter
from amlwait.core.budget import RequestBudget
from amlwait.core.jobs import JobRef
from amlwait.core.manifest import Manifest
from amlwait.core.tracker import BatchOutcome
from amlwait.core.wording import count, plural
from amlwait.devops import vso
from amlwait.devops.reporter import AzureDevOpsReporter, in_pipeline
from amlwait.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_SUCCEEDED,
    EXIT_TIMED_OUT,
    InputError,
)
from amlwait.events import ListingFailed, WaitEvent
from amlwait.readpath import mlflow_waiter
from amlwait.redact import scrub
from amlwait.result import WaitResult
from amlwait.waiter import Waiter, WaitOptions, unread_result

EXIT_CODES = {
    BatchOutcome.SUCCEEDED: EXIT_SUCCEEDED,
    BatchOutcome.FAILED: EXIT_FAILED,
    BatchOutcome.TIMED_OUT: EXIT_TIMED_OUT,
    BatchOutcome.INTERRUPTED: EXIT_INTERRUPTED,
    BatchOutcome.ERROR: EXIT_BAD_INPUT,
}

REPORT_KINDS = ("json", "junit", "summary", "html")


def write_reports(result: WaitResult, paths: dict[str, Path | None]) -> None:
    """The report files asked for; each written whole or not at all."""
    json_path = paths.get("json")
    if json_path is not None:
        write_json_atomically(json_path, result.to_json())
    renderers: dict[str, Callable[[WaitResult], str]] = {}
    if paths.get("junit") is not None:
        from amlwait.devops.junit import render_junit

        renderers["junit"] = render_junit
    if paths.get("summary") is not None:
        from amlwait.devops.summary import render_summary

        renderers["summary"] = render_summary
    if paths.get("html") is not None:
        from amlwait.devops.html import render_html

        renderers["html"] = render_html
    for kind, render in renderers.items():
        path = paths[kind]
        assert path is not None
        write_text_atomically(path, render(result))


def _wait_options(options: dict[str, Any]) -> tuple[WaitOptions, RequestBudget]:
    try:
        policy, budget = polling_from_flags(options)
    except ValueError as error:
        raise InputError(str(error)) from None
    wait_options = WaitOptions(
        timeout=options["timeout"],
        policy=policy,
        fail_fast=options["fail_fast"],
        cancel_remaining=options["cancel_remaining"],
        cancel_on_interrupt=options["cancel_on_interrupt"],
        retries=options.get("retries", 0),
    )
    return wait_options, budget


def _manifest_updater(manifest: Manifest, path: Path | None) -> Callable[[list[JobRef]], None]:
    """With ``--update-manifest``: after each retry, rewrite that file to name the newest
    attempts (atomically)."""

    def on_retry(current: list[JobRef]) -> None:
        if path is not None:
            renamed = Manifest(jobs=tuple(current), tag=manifest.tag, source=str(path))
            write_json_atomically(path, renamed.to_document())

    return on_retry


@dataclass
class _Audience:
    """Who hears the wait: a person (live table on a terminal, plain lines otherwise) and,
    in a pipeline, the agent (logging commands)."""

    person: PlainReporter | LiveReporter
    pipeline: AzureDevOpsReporter | None

    @classmethod
    def for_flags(cls, options: dict[str, Any]) -> _Audience:
        devops = options.get("azure_devops")
        if devops is None:
            devops = in_pipeline()
        live = sys.stdout.isatty() and not devops
        person = (
            LiveReporter(sys.stdout)
            if live
            else PlainReporter(sys.stdout, line_filter=vso.inert if devops else None)
        )
        return cls(person, AzureDevOpsReporter(sys.stdout) if devops else None)

    def __call__(self, event: WaitEvent) -> None:
        if isinstance(event, ListingFailed):
            self.trouble(event.message)
        if self.pipeline is not None:
            self.pipeline(event)
        self.person(event)

    def trouble(self, line: str) -> None:
        """A retrying / recovered line from the job source, or an unusable listing: on
        stdout, and in a pipeline the start of trouble is a warning too."""
        line = scrub(line)
        if self.pipeline is not None and line.startswith(("retrying", "the listing")):
            from amlwait.devops import vso

            self.pipeline.emit(vso.log_issue("warning", line, code="amlwait.retrying"))
        print(line, flush=True)

    def finish(self, result: WaitResult, paths: dict[str, Path | None]) -> None:
        self.person.finish(result)
        write_reports(result, paths)
        if self.pipeline is not None:
            summary = paths["summary"]
            self.pipeline.finish(result, str(summary) if summary is not None else None)


def _report_paths(options: dict[str, Any]) -> dict[str, Path | None]:
    return {
        kind: check_output_path(f"--{kind}", options.get(f"{kind}_path")) for kind in REPORT_KINDS
    }


def _pipeline_summary(paths: dict[str, Path | None]) -> None:
    """The run's summary tab is the point of a pipeline run: always have one."""
    if paths["summary"] is None:
        folder = os.environ.get("AGENT_TEMPDIRECTORY") or tempfile.gettempdir()
        paths["summary"] = Path(folder) / f"amlwait-summary-{os.getpid()}.md"


def _run_waiter(
    manifest: Manifest,
    options: dict[str, Any],
    wait_options: WaitOptions,
    budget: RequestBudget,
    audience: _Audience,
    on_retry: Callable[[list[JobRef]], None],
    paths: dict[str, Path | None],
) -> WaitResult:
    """The wait itself, in an event loop; SIGINT/SIGTERM stop it (it still ends in a
    result). A wait that breaks is reported (outcome ``error``), then its error raised."""
    holder: dict[str, Waiter] = {}
    # Built before the wait starts: a bad endpoint or token is bad input (one line, exit 2,
    # no reports: nothing was waited for).
    arm = arm_source_from_flags(options, budget, audience.trouble)

    async def main() -> WaitResult:
        async with arm as source:
            waiter = mlflow_waiter(
                manifest.jobs,
                source,
                mode=options.get("read_path") or "auto",
                note=_note,
                options=wait_options,
                tag=manifest.tag,
                listener=audience,
                on_retry=on_retry,
            )
            holder["waiter"] = waiter
            return await waiter.run()

    def on_signal() -> None:
        if "waiter" in holder:
            holder["waiter"].stop()

    try:
        return run_with_signals(main, on_signal)
    except Exception as error:
        waiter = holder.get("waiter")
        broken = (
            waiter.result_so_far(error)
            if waiter is not None
            else unread_result(manifest.jobs, error, options=wait_options, tag=manifest.tag)
        )
        audience.finish(broken, paths)
        raise


def _note(line: str) -> None:
    """A one-line note of the read path (why it reads ARM only)."""
    print(line, flush=True)


def _say_how_it_ended(result: WaitResult) -> None:
    unfinished = [job for job in result.jobs if not job.finished]
    if result.outcome is BatchOutcome.INTERRUPTED:
        if result.canceled:
            print(
                f"interrupted: cancelled {count(len(result.canceled), 'unfinished job')}",
                flush=True,
            )
        else:
            print(
                f"interrupted: {count(len(unfinished), 'unfinished job')} "
                f"{plural('was', len(unfinished))} NOT cancelled "
                f"(--cancel-on-interrupt would cancel {'it' if len(unfinished) == 1 else 'them'})",
                flush=True,
            )
    elif result.outcome is BatchOutcome.TIMED_OUT:
        print(f"deadline reached with {count(len(unfinished), 'job')} unfinished", flush=True)


def run_wait(manifest_path: str, **options: Any) -> int:
    """``amlwait wait MANIFEST``: every bad flag or path is refused before the first
    request; the exit code is :data:`EXIT_CODES` of the batch's outcome."""
    paths = _report_paths(options)
    manifest = manifest_from_flags(manifest_path, options)
    wait_options, budget = _wait_options(options)
    update_path = check_output_path("--update-manifest", options.get("update_manifest"))
    audience = _Audience.for_flags(options)
    if audience.pipeline is not None:
        _pipeline_summary(paths)
    on_retry = _manifest_updater(manifest, update_path)
    result = _run_waiter(manifest, options, wait_options, budget, audience, on_retry, paths)
    if manifest.pipeline is not None:  # the pipeline job decided; its steps are reported
        from amlwait.cli.pipeline_steps import with_steps

        result = with_steps(result, manifest, options, budget, audience.trouble)
    audience.finish(result, paths)
    _say_how_it_ended(result)
    return EXIT_CODES[result.outcome]
