"""Load on one ``amlwait serve`` process: W concurrent waits of J jobs each.

Real clock, real HTTP: a scripted workspace on loopback holds W×J jobs (each Running, then
Completed 20–60 s after the start), a fake Azure DevOps plan API records the callbacks,
and one service process (SQLite store, default polling and request budget unless
``--fast``) takes W
``POST /v1/waits``. Prints the service's peak RSS, the ARM requests it sent, and when the
last TaskCompleted arrived.

    python -m bench.service_load --waits 1000 --jobs 10
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from amlwait.service.testing import TEST_WORKSPACE as WS
from amlwait.service.testing import FakeDevOps, ServiceProcess, callback_headers
from amlwait.service.testing import wait_body as body
from amlwait.workspace import ScriptedWorkspace


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def script_batches(workspace: ScriptedWorkspace, waits: int, jobs: int, rng: random.Random) -> None:
    """``waits`` batches of ``jobs`` jobs, each Running now and Completed 20–60 s later."""
    shift = time.time() - workspace.start_time
    for w in range(waits):
        for j in range(jobs):
            done = shift + rng.uniform(20, 60)
            workspace.add_job(
                WS,
                f"W{w:05d}_J{j:02d}",
                [(0, "Running"), (done, "Completed")],
                tags={f"batch-{w:05d}": "1"},
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waits", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--limit", type=float, default=900.0, help="give up after (s)")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="the tests' sub-second polling instead of the defaults (15 s, backing off to 2 m)",
    )
    args = parser.parse_args()
    rng = random.Random(7)
    devops = FakeDevOps().start()
    with ScriptedWorkspace(page_size=100) as workspace, tempfile.TemporaryDirectory() as tmp:
        script_batches(workspace, args.waits, args.jobs, rng)
        # ServiceProcess starts with the tests' fast intervals; the last flag given wins.
        defaults = [
            "--poll-interval",
            "15s",
            "--max-poll-interval",
            "2m",
            "--progress-interval",
            "10s",
        ]
        extra = [] if args.fast else defaults
        service = ServiceProcess(Path(tmp) / "load.db", devops, workspace.endpoint, extra).start()
        started = time.time()
        plans = []
        for w in range(args.waits):
            headers = callback_headers(devops.org_url)
            plans.append(headers["PlanId"])
            answer = service.post_wait(body(f"batch-{w:05d}", args.jobs, timeout="1h"), headers)
            assert answer.status_code == 202, answer.text
        posted = time.time() - started
        assert service.process is not None
        while time.time() - started < args.limit:
            done = len(devops.accepted_completions())
            if done >= args.waits:
                break
            time.sleep(2)
        elapsed = time.time() - started
        done = len(devops.accepted_completions())
        results = [c.json["result"] for c in devops.accepted_completions()]
        arm = len(workspace.requests)
        print(
            f"waits={args.waits} jobs/wait={args.jobs} posted in {posted:.1f}s "
            f"({args.waits / posted:.0f}/s); TaskCompleted {done}/{args.waits} "
            f"(succeeded {results.count('succeeded')}) after {elapsed:.0f}s; "
            f"ARM requests {arm} ({arm / args.waits:.1f} per wait); "
            f"service peak RSS {peak_rss_mb(service.process.pid):.0f} MB"
        )
        service.stop()
    devops.stop()


if __name__ == "__main__":
    main()
