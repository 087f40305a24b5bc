"""What the ``wait`` and ``cancel`` commands do, behind the click layer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from amlwait.azureml.arm import ArmJobSource
from amlwait.console import LiveReporter, PlainReporter
from amlwait.core.budget import RequestBudget
from amlwait.core.jobs import JobRef
from amlwait.core.manifest import Manifest
from amlwait.core.policy import PollPolicy
from amlwait.core.status import TERMINAL
from amlwait.core.tracker import BatchOutcome
from amlwait.devops.reporter import AzureDevOpsReporter, in_pipeline
from amlwait.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_SUCCEEDED,
    EXIT_TIMED_OUT,
    InputError,
)
from amlwait.manifest_io import load_manifest
from amlwait.waiter import Waiter, WaitOptions, WaitResult

T = TypeVar("T")

EXIT_CODES = {
    BatchOutcome.SUCCEEDED: EXIT_SUCCEEDED,
    BatchOutcome.FAILED: EXIT_FAILED,
    BatchOutcome.TIMED_OUT: EXIT_TIMED_OUT,
    BatchOutcome.INTERRUPTED: EXIT_INTERRUPTED,
}


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` so that a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomically(path: Path, document: Any) -> None:
    write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def check_output_path(flag: str, value: str | None) -> Path | None:
    """Fail now, not after a two-day wait, when a report cannot be written."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise InputError(f"{flag} {value}: is a directory; give a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"{flag} {value}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{flag} {value}: the folder {parent} is not writable")
    return path


def _manifest(path: str, options: dict[str, Any]) -> Manifest:
    return load_manifest(
        path,
        subscription=options.get("subscription"),
        resource_group=options.get("resource_group"),
        workspace=options.get("workspace_name"),
    )


def _source(options: dict[str, Any], budget: RequestBudget | None = None) -> ArmJobSource:
    return ArmJobSource(
        endpoint=options["arm_endpoint"],
        api_version=options["api_version"],
        budget=budget,
    )


def run_with_signals(
    main: Callable[[], Coroutine[Any, Any, T]], on_signal: Callable[[], None]
) -> T:
    """Run ``main`` with SIGINT/SIGTERM calling ``on_signal`` instead of killing us."""

    async def runner() -> T:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Not possible off the main thread or on some platforms: then Ctrl-C kills.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal)
        try:
            return await main()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    return asyncio.run(runner())


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


def run_wait(manifest_path: str, **options: Any) -> int:
    paths: dict[str, Path | None] = {
        kind: check_output_path(f"--{kind}", options.get(f"{kind}_path"))
        for kind in ("json", "junit", "summary", "html")
    }
    manifest = _manifest(manifest_path, options)
    try:
        policy = PollPolicy(
            poll_interval=options["poll_interval"],
            max_poll_interval=options["max_poll_interval"],
            not_found_grace=options["not_found_grace"],
            suspect_grace=options["not_responding_grace"],
        )
        budget = RequestBudget(
            rate=options["max_requests_per_second"],
            burst=max(1.0, 2 * options["max_requests_per_second"]),
        )
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
    update_path = check_output_path("--update-manifest", options.get("update_manifest"))

    def on_retry(current: list[JobRef]) -> None:
        if update_path is not None:
            renamed = Manifest(jobs=tuple(current), tag=manifest.tag, source=str(update_path))
            write_json_atomically(update_path, renamed.to_document())

    devops = options.get("azure_devops")
    if devops is None:
        devops = in_pipeline()
    live = sys.stdout.isatty() and not devops
    reporter: PlainReporter | LiveReporter = (
        LiveReporter(sys.stdout) if live else PlainReporter(sys.stdout)
    )
    pipeline = AzureDevOpsReporter(sys.stdout) if devops else None
    if pipeline is not None and paths["summary"] is None:
        # The run's summary tab is the point of a pipeline run: always have one.
        folder = os.environ.get("AGENT_TEMPDIRECTORY") or tempfile.gettempdir()
        paths["summary"] = Path(folder) / f"amlwait-summary-{os.getpid()}.md"

    def listener(event: Any) -> None:
        if pipeline is not None:
            pipeline(event)
        reporter(event)

    holder: dict[str, Waiter] = {}

    async def main() -> WaitResult:
        async with _source(options, budget) as source:
            waiter = Waiter(
                manifest.jobs,
                source,
                options=wait_options,
                tag=manifest.tag,
                listener=listener,
                on_retry=on_retry,
            )
            holder["waiter"] = waiter
            return await waiter.run()

    def on_signal() -> None:
        if "waiter" in holder:
            holder["waiter"].stop()

    result = run_with_signals(main, on_signal)
    reporter.finish(result)
    write_reports(result, paths)
    if pipeline is not None:
        summary = paths["summary"]
        pipeline.finish(result, str(summary) if summary is not None else None)
    unfinished = [job for job in result.jobs if not job.finished]
    if result.outcome is BatchOutcome.INTERRUPTED:
        if result.canceled:
            print(f"interrupted: cancelled {len(result.canceled)} unfinished jobs", flush=True)
        else:
            print(
                f"interrupted: {len(unfinished)} unfinished jobs were NOT cancelled "
                "(--cancel-on-interrupt would cancel them)",
                flush=True,
            )
    elif result.outcome is BatchOutcome.TIMED_OUT:
        print(f"deadline reached with {len(unfinished)} jobs unfinished", flush=True)
    return EXIT_CODES[result.outcome]


def run_cancel(manifest_path: str, **options: Any) -> int:
    manifest = _manifest(manifest_path, options)

    async def main() -> int:
        canceled: list[str] = []
        skipped: list[str] = []
        failed: list[str] = []
        semaphore = asyncio.Semaphore(16)
        async with _source(options) as source:

            async def one(ref: Any) -> None:
                async with semaphore:
                    try:
                        snapshot = await source.get_job(ref)
                        if snapshot is None:
                            print(f"{ref.name}  not found; nothing to cancel", flush=True)
                            skipped.append(ref.name)
                            return
                        if snapshot.status in TERMINAL:
                            print(f"{ref.name}  already {snapshot.status}", flush=True)
                            skipped.append(ref.name)
                            return
                        await source.cancel_job(ref)
                        print(f"{ref.name}  {snapshot.status} -> cancel requested", flush=True)
                        canceled.append(ref.name)
                    except InputError:
                        raise
                    except Exception as error:  # reported per job; the rest go on
                        print(f"{ref.name}  cancel failed: {error}", flush=True)
                        failed.append(ref.name)

            await asyncio.gather(*(one(ref) for ref in manifest.jobs))
        print(
            f"cancel requested for {len(canceled)} of {len(manifest.jobs)} jobs "
            f"({len(skipped)} already finished or missing, {len(failed)} failed)",
            flush=True,
        )
        return EXIT_FAILED if failed else EXIT_SUCCEEDED

    return run_with_signals(main, lambda: None)
