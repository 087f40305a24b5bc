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
from amlwait.errors import EXIT_FAILED, EXIT_SUCCEEDED, AuthenticationError, InputError
from amlwait.redact import scrub


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
                    except (InputError, AuthenticationError):
                        raise  # the same for every job: one line, exit 2, no repeats
                    except Exception as error:  # reported per job; the rest go on
                        print(f"{ref.name}  cancel failed: {scrub(str(error))}", flush=True)
                        failed.append(ref.name)

            await asyncio.gather(*(one(ref) for ref in manifest.jobs))
        print(
            f"cancel requested for {len(canceled)} of {len(manifest.jobs)} jobs "
            f"({len(skipped)} already finished or missing, {len(failed)} failed)",
            flush=True,
        )
        return EXIT_FAILED if failed else EXIT_SUCCEEDED

    return run_with_signals(main, lambda: None)
