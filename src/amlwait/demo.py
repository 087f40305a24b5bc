"""``amlwait demo``: the main job, offline.

Starts the local workspace in this process, submits a handful of small real jobs over
plain ARM (PUT), and waits for them through exactly the code path used against Azure
(the ARM client, LIST by batch tag, the waiting engine, the console reports).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shlex
import sys
import tempfile
import uuid
from pathlib import Path

from amlwait.azureml.arm import ArmJobSource
from amlwait.commands import EXIT_CODES, write_json_atomically
from amlwait.console import PlainReporter
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.policy import PollPolicy
from amlwait.waiter import Waiter, WaitOptions

DEMO_WORKSPACE = WorkspaceRef("00000000-0000-0000-0000-000000000000", "amlwait-demo", "local")
TRAIN_SNIPPET = (
    "import random, sys, time\n"
    "random.seed({seed})\n"
    "print('training', {name!r}, flush=True)\n"
    "time.sleep({seconds})\n"
    "loss = round(random.uniform(0.1, 0.4), 3)\n"
    "print('loss', loss)\n"
    "sys.exit({code})\n"
)


def _job_properties(
    name: str, seconds: float, fails: bool, tag: str, seed: int
) -> dict[str, object]:
    script = TRAIN_SNIPPET.format(seed=seed, name=name, seconds=seconds, code=3 if fails else 0)
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"
    return {
        "jobType": "Command",
        "command": command,
        "environmentId": "azureml:local-python@latest",
        "computeId": "local",
        "experimentName": "amlwait-demo",
        "displayName": name,
        "tags": {tag: "", "plant": name.split("_")[0], "circuit": name.split("_")[1]},
    }


def run_demo(*, job_count: int, fail: int, json_path: str | None) -> int:
    from amlwait.workspace import LocalWorkspace

    date = dt.date.today().strftime("%Y_%m_%d")
    tag = f"amlwait-demo-{uuid.uuid4().hex[:8]}"
    plan = []
    for index in range(job_count):
        name = f"PLANT{index // 2 + 1:03d}_CIRCUIT{index % 2 + 1:02d}_{date}"
        slow = index == job_count - 1
        seconds = 6.0 if slow else 1.0 + (index % 3) * 0.5
        plan.append((name, seconds, index < fail))
    out = sys.stdout
    with (
        tempfile.TemporaryDirectory(prefix="amlwait-demo-") as data,
        LocalWorkspace(Path(data), max_concurrent=3) as workspace,
    ):
        print(f"local workspace at {workspace.endpoint} (data in a temporary folder)", file=out)

        async def main() -> int:
            async with ArmJobSource(endpoint=workspace.endpoint) as source:
                refs = []
                for seed, (name, seconds, fails) in enumerate(plan):
                    ref = JobRef(DEMO_WORKSPACE, name)
                    await source.put_job(ref, _job_properties(name, seconds, fails, tag, seed))
                    refs.append(ref)
                print(
                    f"submitted {len(refs)} jobs tagged {tag}"
                    + (f" ({fail} set to fail)" if fail else ""),
                    file=out,
                    flush=True,
                )
                reporter = PlainReporter(out)
                options = WaitOptions(
                    timeout=600,
                    policy=PollPolicy(poll_interval=0.5, max_poll_interval=2.0),
                )
                waiter = Waiter(refs, source, options=options, tag=tag, listener=reporter)
                result = await waiter.run()
                reporter.finish(result)
                if json_path:
                    write_json_atomically(Path(json_path), result.to_json())
                return EXIT_CODES[result.outcome]

        return asyncio.run(main())
