"""What ``amlwait submit`` does, behind the click layer.

Everything that can be wrong with the input (connection flags, the circuits file, the job
template, names, tags, the matrix variable) is checked before the first request, so bad
input exits 2 having sent nothing. Then every circuit is submitted (see
:mod:`~amlwait.submit.submitter`), one report line each as it finishes, and the manifest
is written atomically, listing the newest attempt of every circuit that has one — the
circuits that failed this time included when an earlier attempt exists.

Exit codes: 0 every circuit has a job · 1 a circuit could not be submitted (run again to
complete the batch) · 2 bad input, or the code folder could not be registered (nothing
was submitted) · 130 interrupted (circuits not yet started are left).

Code: with plain ARM (``--via arm``) every local code folder of the batch is uploaded and
registered as a code asset once, before the first circuit, and its ARM id becomes each
job's ``codeId`` (:mod:`~amlwait.submit.code_upload`); ``--no-code-upload`` sends the
folder as a ``file://`` URI instead, which only the local workspace on this machine reads,
so it is refused (exit 2, nothing sent) for any endpoint not on loopback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.manifest import Manifest
from amlwait.core.wording import count
from amlwait.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_SUCCEEDED, InputError
from amlwait.submit.circuits import load_circuits
from amlwait.submit.code_upload import refuse_local_code, register_batch_code
from amlwait.submit.plan import DEFAULT_NAME_PATTERN, Batch, plan_batch
from amlwait.submit.submitter import CircuitResult, Outcome, Submitter
from amlwait.submit.template import JobTemplate


def _workspace(options: dict[str, Any]) -> WorkspaceRef:
    missing = [
        hint
        for key, hint in (
            ("subscription", "--subscription (or AZURE_SUBSCRIPTION_ID)"),
            ("resource_group", "-g/--resource-group (or AZURE_RESOURCE_GROUP)"),
            ("workspace_name", "-w/--workspace-name (or AZUREML_WORKSPACE_NAME)"),
        )
        if not options.get(key)
    ]
    if missing:
        raise InputError(f"submit needs {', '.join(missing)}")
    return WorkspaceRef(
        options["subscription"], options["resource_group"], options["workspace_name"]
    )


def build_batch(
    circuits_path: Path,
    job_path: Path,
    *,
    workspace: WorkspaceRef,
    run_date: date,
    only: Sequence[str] = (),
    name_pattern: str = DEFAULT_NAME_PATTERN,
) -> Batch:
    """Read both files and plan the batch; raises :class:`InputError` on any problem."""
    return _plan(
        circuits_path,
        job_path,
        workspace=workspace,
        run_date=run_date,
        only=only,
        name_pattern=name_pattern,
    )[0]


def _plan(
    circuits_path: Path,
    job_path: Path,
    *,
    workspace: WorkspaceRef,
    run_date: date,
    only: Sequence[str] = (),
    name_pattern: str = DEFAULT_NAME_PATTERN,
) -> tuple[Batch, JobTemplate]:
    circuits = load_circuits(circuits_path)
    template = JobTemplate.load(job_path)
    batch = plan_batch(
        circuits.select(only),
        template,
        circuits_source=circuits.source,
        run_date=run_date,
        workspace=workspace,
        name_pattern=name_pattern,
    )
    return batch, template


def _matrix_lines(batch: Batch, names: Sequence[str], variable: str | None) -> list[str]:
    if variable is None:
        return []
    from amlwait.devops.pipelines.legs import matrix_variable_lines

    return matrix_variable_lines([JobRef(batch.workspace, n) for n in names], variable=variable)


def _columns(batch: Batch) -> tuple[int, int]:
    return (
        max(len(job.key) for job in batch.jobs),
        max(len(job.base_name) for job in batch.jobs),
    )


def run_submit(**options: Any) -> int:
    from amlwait.cli.runtime import check_output_path

    workspace = _workspace(options)
    dry_run: bool = options["dry_run"]
    output = check_output_path("--output", options.get("output"))
    if output is None and not dry_run:
        raise InputError("submit needs --output FILE (the manifest amlwait wait reads)")
    run_date: date = options.get("run_date") or datetime.now(timezone.utc).date()
    batch, template = _plan(
        Path(options["circuits"]),
        Path(options["job"]),
        workspace=workspace,
        run_date=run_date,
        only=options.get("only") or (),
        name_pattern=options.get("name_pattern") or DEFAULT_NAME_PATTERN,
    )
    if options.get("as_pipeline"):
        from amlwait.submit.pipeline_command import run_pipeline_submit

        if options.get("no_code_upload") and not dry_run:
            refuse_local_code(batch, options["arm_endpoint"])
        from amlwait.cli.runtime import write_json_atomically

        return run_pipeline_submit(
            batch, template, options, output, sys.stdout, write_json=write_json_atomically
        )
    variable: str | None = options.get("matrix_variable")
    # Checks the variable and every leg name before anything is sent.
    planned_lines = _matrix_lines(batch, [job.base_name for job in batch.jobs], variable)
    if dry_run:
        return _dry_run(batch, planned_lines, sys.stdout)
    if options.get("no_code_upload"):
        refuse_local_code(batch, options["arm_endpoint"])
    source: Any = None
    if options.get("via") == "azure-ai-ml":
        from amlwait.submit.azure_sdk import AzureMLSubmitSource

        source = AzureMLSubmitSource.for_batch(template, batch)
    return _submit(batch, options, output, variable, sys.stdout, source=source)


def _dry_run(batch: Batch, matrix_lines: list[str], out: TextIO) -> int:
    width, _ = _columns(batch)
    for job in batch.jobs:
        print(f"{job.key:<{width}}  {job.base_name}", file=out)
        for line in job.command.strip().splitlines():
            print(f"    {line}", file=out)
    for line in matrix_lines:
        print(line, file=out)
    print(
        f"dry run: {count(len(batch.jobs), 'job')} would be created for "
        f"{batch.run_date.isoformat()} in "
        f"{batch.workspace.workspace} (tag {batch.tag}); nothing was sent, no manifest written",
        file=out,
        flush=True,
    )
    return EXIT_SUCCEEDED


def _submit(
    batch: Batch,
    options: dict[str, Any],
    output: Path | None,
    variable: str | None,
    out: TextIO,
    *,
    source: Any = None,
) -> int:
    from amlwait.cli.runtime import write_json_atomically

    results, interrupted = _run_submitter(batch, options, out, source)
    existing = [r.name for r in results if r.name is not None]
    manifest = Manifest(
        jobs=tuple(JobRef(batch.workspace, name) for name in existing),
        tag=batch.tag,
        source=str(output),
    )
    assert output is not None
    write_json_atomically(output, manifest.to_document())
    for line in _matrix_lines(batch, existing, variable):
        print(line, file=out)
    return _say_what_was_submitted(batch, results, output, len(existing), interrupted, out)


def _run_submitter(
    batch: Batch, options: dict[str, Any], out: TextIO, source: Any
) -> tuple[list[CircuitResult], bool]:
    """Submit the batch, a line per circuit as it is done; SIGINT/SIGTERM stop it (the
    circuits done so far still count). Returns the results and whether it was stopped."""
    from amlwait.azureml.arm import ArmJobSource
    from amlwait.cli.runtime import run_with_signals

    width, name_width = _columns(batch)

    def report(result: CircuitResult) -> None:
        print(
            f"{result.job.key:<{width}}  {result.job.base_name:<{name_width}}  {result.describe()}",
            file=out,
            flush=True,
        )

    if source is None:
        source = ArmJobSource(endpoint=options["arm_endpoint"], api_version=options["api_version"])
    submitter = Submitter(
        source,
        concurrency=options["concurrency"],
        retry_failed=options["retry_failed"],
        on_result=report,
    )
    interrupted: list[bool] = []

    # ARM takes code only as a registered code asset: azure-ai-ml registers its own,
    # plain ARM gets each local folder registered here, once for the whole batch.
    register_code = isinstance(source, ArmJobSource) and not options.get("no_code_upload")

    async def main() -> list[CircuitResult]:
        async with source:
            to_submit = batch
            if register_code:
                to_submit, registered = await register_batch_code(batch, source)
                for done in registered:
                    print(done.describe(), file=out, flush=True)
            return await submitter.submit(to_submit)

    def on_signal() -> None:
        interrupted.append(True)
        submitter.stop()

    results = run_with_signals(main, on_signal)
    return results, bool(interrupted)


def _say_what_was_submitted(
    batch: Batch,
    results: list[CircuitResult],
    output: Path,
    listed: int,
    interrupted: bool,
    out: TextIO,
) -> int:
    counts = {outcome: sum(r.outcome is outcome for r in results) for outcome in Outcome}
    print(
        f"{count(len(results), 'circuit')}: {counts[Outcome.SUBMITTED]} submitted, "
        f"{counts[Outcome.EXISTS]} already existed, {counts[Outcome.RESUBMITTED]} resubmitted, "
        f"{counts[Outcome.FAILED]} failed; {output} lists {count(listed, 'job')} "
        f"(tag {batch.tag})",
        file=out,
        flush=True,
    )
    if interrupted:
        return EXIT_INTERRUPTED
    if counts[Outcome.FAILED]:
        print(
            f"{count(counts[Outcome.FAILED], 'circuit')} could not be submitted; run the same "
            "command again to complete the batch",
            file=out,
            flush=True,
        )
        return EXIT_FAILED
    return EXIT_SUCCEEDED
