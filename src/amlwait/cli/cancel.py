"""What ``amlwait cancel`` does behind the click layer: ask ARM to cancel every job of
the batch that is still going, and say per job what happened.

Exit code 0 when every cancel request that was needed was accepted, 1 when one failed;
a refused credential (the same for every job) stops it at once: one line, exit 2.
"""

from __future__ import annotations

import asyncio
from typing import Any

from amlwait.cli.options import arm_source_from_flags, manifest_from_flags
from amlwait.cli.runtime import run_with_signals
from amlwait.core.status import TERMINAL
from amlwait.core.wording import count
from amlwait.devops import vso
from amlwait.devops.reporter import in_pipeline
from amlwait.errors import EXIT_FAILED, EXIT_SUCCEEDED, AuthenticationError, InputError
from amlwait.redact import scrub


def say(line: str) -> None:
    """Print one line; in a pipeline, one from which the agent reads no command."""
    print(vso.inert(line) if in_pipeline() else line, flush=True)


def run_cancel(manifest_path: str, **options: Any) -> int:
    manifest = manifest_from_flags(manifest_path, options)

    async def main() -> int:
        canceled: list[str] = []
        skipped: list[str] = []
        failed: list[str] = []
        semaphore = asyncio.Semaphore(16)
        async with arm_source_from_flags(options) as source:

            async def one(ref: Any) -> None:
                async with semaphore:
                    try:
                        snapshot = await source.get_job(ref)
                        if snapshot is None:
                            say(f"{ref.name}  not found; nothing to cancel")
                            skipped.append(ref.name)
                            return
                        if snapshot.status in TERMINAL:
                            say(f"{ref.name}  already {snapshot.status}")
                            skipped.append(ref.name)
                            return
                        await source.cancel_job(ref)
                        say(f"{ref.name}  {snapshot.status} -> cancel requested")
                        canceled.append(ref.name)
                    except (InputError, AuthenticationError):
                        raise  # the same for every job: one line, exit 2, no repeats
                    except Exception as error:  # reported per job; the rest go on
                        say(f"{ref.name}  cancel failed: {scrub(str(error))}")
                        failed.append(ref.name)

            await asyncio.gather(*(one(ref) for ref in manifest.jobs))
        print(
            f"cancel requested for {len(canceled)} of {count(len(manifest.jobs), 'job')} "
            f"({len(skipped)} already finished or missing, {len(failed)} failed)",
            flush=True,
        )
        return EXIT_FAILED if failed else EXIT_SUCCEEDED

    return run_with_signals(main, lambda: None)
