"""Load on ``amlwait serve``: W concurrent waits of J jobs each, on K replicas.

Real clock, real HTTP: a scripted workspace on loopback, a fake Azure DevOps plan API that
records the callbacks, and K service processes. One replica stores its waits in SQLite;
several share one PostgreSQL database (a fresh schema per run, dropped afterwards). The
waits are posted round-robin across the replicas, as a load balancer would.

Each wait's jobs are scripted just before it is posted: Queued, Running within 10 s, and
ended 20–60 s after the post (``--job-seconds``): 2 status changes per job.
``--failed-share`` of the waits (2 % by default) have one Failed job; their result must be
``failed``, every other wait's ``succeeded``.

Checked (exit code 1 when any fails): every wait gets exactly one accepted TaskCompleted
(duplicates and missing ones are counted) with the right result, within ``--limit``
seconds of wall time. Measured, per replica and in total: CPU seconds of the service
process (utime + stime, read just before it is stopped), peak RSS (VmHWM), ARM requests,
and the delay from a wait's last job ending to its TaskCompleted (p50/p95/max).

    python -m bench.service_load --waits 1000 --jobs 10
    python -m bench.service_load --waits 1000 --jobs 10 --replicas 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlwait.service.testing import TEST_WORKSPACE as WS
from amlwait.service.testing import FakeDevOps, ServiceProcess, callback_headers
from amlwait.service.testing import wait_body as body
from amlwait.workspace import ScriptedWorkspace
from bench import procfs

DEFAULT_POSTGRES = os.environ.get(
    "AMLWAIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# The service's defaults, given explicitly: ServiceProcess starts with the tests' sub-second
# flags, and the last flag given wins.
DEFAULT_FLAGS = [
    "--poll-interval", "15s",
    "--max-poll-interval", "2m",
    "--not-found-grace", "5m",
    "--lease", "60s",
    "--progress-interval", "10s",
    "--retry-initial", "2s",
    "--callback-timeout", "20s",
]  # fmt: skip
# With --fast: the tests' sub-second leases and retries, but polling and a not-found grace
# that a replica's ARM budget (10 requests/s) can serve for a few dozen waits.
FAST_EXTRA = ["--poll-interval", "0.5s", "--max-poll-interval", "1s", "--not-found-grace", "30s"]
STATUS_CHANGES_PER_JOB = 2  # Queued -> Running -> Completed/Failed


@dataclass
class Wait:
    index: int
    tag: str
    plan: str
    replica: int
    failing: bool
    last_end: float = 0.0
    """Wall time when its last job ends."""


@dataclass
class ReplicaNumbers:
    waits_posted: int = 0
    cpu_seconds: float = math.nan
    peak_rss_mb: float = math.nan
    arm_requests: float = math.nan
    devops_requests: float = math.nan
    devops_errors: float = math.nan
    log_lines: int = 0
    """Lines the replica logged (warnings and errors: a quiet run logs none)."""
    leases_lost: int = 0


@dataclass
class Outcome:
    waits: int
    jobs: int
    replicas: int
    store: str
    flags: str
    status_changes: int
    wall_seconds: float = 0.0
    post_seconds: float = 0.0
    replica: list[ReplicaNumbers] = field(default_factory=list)
    arm_requests: int = 0
    requests_by_kind: dict[str, int] = field(default_factory=dict)
    """Every request the workspace answered: ARM, and the data plane (discovery, run
    history, MLflow) that times a finished batch's jobs for its summary."""
    completed_once: int = 0
    missing: int = 0
    duplicates: int = 0
    wrong_results: int = 0
    failed_waits: int = 0
    harness_cpu_seconds: float = 0.0
    """This process: the scripted workspace, the fake DevOps and the bookkeeping."""
    callback_delay: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    """A few wrong waits, each with the last lines of its live feed."""

    @property
    def cpu_seconds(self) -> float:
        return sum(r.cpu_seconds for r in self.replica)

    def summary(self) -> dict[str, Any]:
        cpu = self.cpu_seconds
        document: dict[str, Any] = {
            key: value for key, value in self.__dict__.items() if key not in ("replica",)
        }
        document["replica"] = [r.__dict__ for r in self.replica]
        document["cpu_seconds"] = cpu
        document["cpu_per_1000_status_changes"] = cpu / self.status_changes * 1000
        document["peak_rss_mb_max"] = max(r.peak_rss_mb for r in self.replica)
        document["arm_requests_per_wait"] = self.arm_requests / self.waits
        document["ok"] = not self.failures
        return document


def request_kind(path: str) -> str:
    for kind in ("mlflow", "history", "discovery"):
        if f"/{kind}/" in path or path.endswith(f"/{kind}"):
            return kind
    return "arm"


def percentile(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def script_wait(
    workspace: ScriptedWorkspace,
    wait: Wait,
    jobs: int,
    rng: random.Random,
    ends: tuple[float, float] = (20.0, 60.0),
) -> None:
    """The wait's jobs, from now: Queued, Running during the first sixth of ``ends``,
    ended ``ends`` seconds from now."""
    now = time.time()
    shift = now - workspace.start_time
    failed_job = rng.randrange(jobs) if wait.failing else -1
    for j in range(jobs):
        running = rng.uniform(0, ends[0] / 2)
        ended = rng.uniform(*ends)
        end_status = "Failed" if j == failed_job else "Completed"
        wait.last_end = max(wait.last_end, now + ended)
        workspace.add_job(
            WS,
            f"W{wait.index:05d}_J{j:02d}",
            [(shift, "Queued"), (shift + running, "Running"), (shift + ended, end_status)],
            tags={wait.tag: "1"},
        )


class PostgresSchema:
    """A fresh schema on ``url`` for one run, dropped by :meth:`drop`."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.name = f"amlwait_load_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"CREATE SCHEMA {self.name}")
        separator = "&" if "?" in url else "?"
        self.store_url = f"{url}{separator}options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"DROP SCHEMA {self.name} CASCADE")


def replica_metrics(service: ServiceProcess) -> dict[str, float]:
    text = service.get("/metrics").text
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("amlwait_") and not line.startswith("#") and "{" not in line
    }


def run(args: argparse.Namespace, log: Any = print) -> Outcome:
    if args.replicas < 1 or args.waits < 1 or args.jobs < 1:
        raise SystemExit("--waits, --jobs and --replicas must be at least 1")
    store = args.store or ("sqlite" if args.replicas == 1 else DEFAULT_POSTGRES)
    if args.replicas > 1 and not store.startswith("postgresql"):
        raise SystemExit("several replicas share a PostgreSQL store: give --store postgresql://…")
    outcome = Outcome(
        waits=args.waits,
        jobs=args.jobs,
        replicas=args.replicas,
        store="sqlite" if store == "sqlite" else "postgresql",
        flags="fast" if args.fast else "defaults",
        status_changes=args.waits * args.jobs * STATUS_CHANGES_PER_JOB,
        replica=[ReplicaNumbers() for _ in range(args.replicas)],
    )
    rng = random.Random(args.seed)
    failing_every = round(1 / args.failed_share) if args.failed_share > 0 else 0
    waits = [
        Wait(
            index=w,
            tag=f"batch-{w:05d}",
            plan="",
            replica=w % args.replicas,
            failing=bool(failing_every) and w % failing_every == failing_every // 2,
        )
        for w in range(args.waits)
    ]
    outcome.failed_waits = sum(w.failing for w in waits)
    started = time.time()
    deadline = started + args.limit
    devops = FakeDevOps().start()
    schema: PostgresSchema | None = None
    services: list[ServiceProcess] = []
    try:
        with ScriptedWorkspace(page_size=100) as workspace, tempfile.TemporaryDirectory() as tmp:
            extra = list(FAST_EXTRA if args.fast else DEFAULT_FLAGS)
            if store != "sqlite":
                schema = PostgresSchema(store)
                extra += ["--store", schema.store_url]
            for k in range(args.replicas):
                services.append(
                    ServiceProcess(Path(tmp) / f"load{k}.db", devops, workspace.endpoint, extra)
                )
                services[-1].start()
            # 1. Post every wait, its jobs scripted just before.
            for wait in waits:
                if time.time() > deadline:
                    outcome.failures.append(f"the limit ({args.limit:g} s) ended the posting")
                    break
                script_wait(workspace, wait, args.jobs, rng, tuple(args.job_seconds))
                headers = callback_headers(devops.org_url)
                wait.plan = headers["PlanId"]
                answer = services[wait.replica].post_wait(
                    body(wait.tag, args.jobs, timeout=args.wait_timeout), headers
                )
                if answer.status_code != 202:
                    outcome.failures.append(
                        f"POST of wait {wait.index} answered {answer.status_code}: "
                        f"{answer.text[:200]}"
                    )
                    break
                outcome.replica[wait.replica].waits_posted += 1
            outcome.post_seconds = time.time() - started
            log(
                f"posted {sum(r.waits_posted for r in outcome.replica)} waits "
                f"in {outcome.post_seconds:.1f} s"
            )
            # 2. Wait for every callback (or the limit), then a little longer for duplicates.
            posted = [w for w in waits if w.plan]
            next_note = time.time() + 30
            tally = CompletionTally(devops)
            while time.time() < deadline:
                done = tally.plans_completed()
                if done >= len(posted):
                    break
                if time.time() >= next_note:
                    log(f"  {time.time() - started:.0f} s: {done}/{len(posted)} TaskCompleted")
                    next_note += 30
                if any(s.process is not None and s.process.poll() is not None for s in services):
                    outcome.failures.append("a service process exited during the run")
                    break
                time.sleep(1)
            else:
                outcome.failures.append(f"the limit ({args.limit:g} s) ended the run")
            settle_until = min(deadline + args.settle, time.time() + args.settle)
            while time.time() < settle_until:
                time.sleep(0.5)
            outcome.wall_seconds = time.time() - started
            # 3. Measure the replicas, then stop them.
            for k, service in enumerate(services):
                numbers = outcome.replica[k]
                assert service.process is not None
                if service.process.poll() is None:
                    try:
                        metrics = replica_metrics(service)
                        numbers.arm_requests = metrics.get("amlwait_arm_requests_total", math.nan)
                        numbers.devops_requests = metrics.get(
                            "amlwait_devops_requests_total", math.nan
                        )
                        numbers.devops_errors = metrics.get("amlwait_devops_errors_total", math.nan)
                    except Exception as error:  # the numbers are missing, the run says why
                        outcome.failures.append(f"replica {k}'s /metrics failed: {error}")
                    pid = service.process.pid
                    cpu = procfs.cpu_seconds(pid)
                    numbers.cpu_seconds = math.nan if cpu is None else cpu
                    numbers.peak_rss_mb = procfs.memory_mb(pid).get("VmHWM", math.nan)
                service.stop()
                lines = service.stderr().splitlines()
                numbers.log_lines = len(lines)
                numbers.leases_lost = sum("lost the lease" in line for line in lines)
            kinds = Counter(request_kind(r.path) for r in workspace.requests)
            outcome.requests_by_kind = dict(kinds)
            outcome.arm_requests = kinds["arm"]
            _judge(outcome, posted, devops)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            outcome.harness_cpu_seconds = usage.ru_utime + usage.ru_stime
            if outcome.failures:
                for k, service in enumerate(services):
                    tail = service.stderr().strip().splitlines()[-5:]
                    if tail:
                        log(f"replica {k} stderr (last lines):\n  " + "\n  ".join(tail))
    finally:
        for service in services:
            service.stop()
        devops.stop()
        if schema is not None:
            schema.drop()
    return outcome


class CompletionTally:
    """How many plans got an accepted TaskCompleted, looking at each call once (the run's
    loop asks every second; re-reading tens of thousands of calls would load the harness)."""

    def __init__(self, devops: FakeDevOps) -> None:
        self.devops = devops
        self.seen = 0
        self.unanswered: list[Any] = []
        self.plans: set[str] = set()

    def plans_completed(self) -> int:
        calls = self.devops.snapshot()
        events = [c for c in calls[self.seen :] if c.path.endswith("/events")]
        self.seen = len(calls)
        waiting = []
        for call in [*self.unanswered, *events]:
            if call.status == 0:
                waiting.append(call)
            elif call.status == 200 and call.is_task_completed:
                self.plans.add(_plan_of(call))
        self.unanswered = waiting
        return len(self.plans)


def _plan_of(call: Any) -> str:
    parts = call.path.split("/plans/", 1)
    return parts[1].split("/", 1)[0] if len(parts) == 2 else ""


def _judge(outcome: Outcome, posted: list[Wait], devops: FakeDevOps) -> None:
    by_plan: dict[str, list[Any]] = {}
    for call in devops.accepted_completions():
        by_plan.setdefault(_plan_of(call), []).append(call)
    delays: list[float] = []
    for wait in posted:
        calls = by_plan.get(wait.plan, [])
        if not calls:
            outcome.missing += 1
            continue
        if len(calls) > 1:
            outcome.duplicates += len(calls) - 1
        else:
            outcome.completed_once += 1
        expected = "failed" if wait.failing else "succeeded"
        if any(c.json.get("result") != expected for c in calls):
            outcome.wrong_results += 1
            if len(outcome.examples) < 5:
                feed = [
                    line
                    for c in devops.snapshot()
                    if c.path.endswith("/feed") and f"/plans/{wait.plan}/" in c.path
                    for line in c.json["value"]
                ]
                outcome.examples.append(
                    f"wait {wait.index} ({wait.tag}) expected {expected}; its feed ends: "
                    + " | ".join(feed[-4:])
                )
        delays.append(min(c.at for c in calls) - wait.last_end)
    outcome.missing += outcome.waits - len(posted)
    outcome.callback_delay = {
        "p50": percentile(delays, 0.50),
        "p95": percentile(delays, 0.95),
        "max": max(delays) if delays else math.nan,
        "min": min(delays) if delays else math.nan,
    }
    results = Counter(c.json.get("result") for calls in by_plan.values() for c in calls)
    outcome.__dict__["results"] = dict(results)
    if outcome.missing:
        outcome.failures.append(f"{outcome.missing} waits got no TaskCompleted")
    if outcome.duplicates:
        outcome.failures.append(f"{outcome.duplicates} duplicate TaskCompleted")
    if outcome.wrong_results:
        outcome.failures.append(f"{outcome.wrong_results} waits got the wrong result")
    if delays and min(delays) < -1:
        outcome.failures.append(
            f"a TaskCompleted came {-min(delays):.1f} s before its last job ended"
        )


def table(outcome: Outcome) -> str:
    """The numbers as a markdown table: one row per replica, then the total."""
    s = outcome.summary()
    changes = outcome.status_changes
    head = (
        "| replica | waits posted | CPU s | CPU s / 1,000 status changes (an even split) "
        "| peak RSS MB "
        "| ARM requests | ARM / wait | log lines (leases lost) |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for k, r in enumerate(outcome.replica):
        per_wait = r.arm_requests / r.waits_posted if r.waits_posted else math.nan
        rows.append(
            f"| {k} | {r.waits_posted} | {r.cpu_seconds:.1f} | "
            f"{r.cpu_seconds / changes * 1000 * len(outcome.replica):.2f} | "
            f"{r.peak_rss_mb:.0f} | {r.arm_requests:.0f} | {per_wait:.1f} | "
            f"{r.log_lines} ({r.leases_lost}) |"
        )
    rows.append(
        f"| total | {outcome.waits} | {s['cpu_seconds']:.1f} | "
        f"{s['cpu_per_1000_status_changes']:.2f} | {s['peak_rss_mb_max']:.0f} (max) | "
        f"{outcome.arm_requests} | {s['arm_requests_per_wait']:.1f} | "
        f"{sum(r.log_lines for r in outcome.replica)} "
        f"({sum(r.leases_lost for r in outcome.replica)}) |"
    )
    d = outcome.callback_delay
    tail = (
        f"\n\nwaits {outcome.waits} × {outcome.jobs} jobs, {outcome.replicas} replica(s) on "
        f"{outcome.store}, {outcome.flags} intervals; status changes {changes}; "
        f"TaskCompleted exactly once {outcome.completed_once}/{outcome.waits}, "
        f"missing {outcome.missing}, duplicates {outcome.duplicates}, wrong results "
        f"{outcome.wrong_results} (scripted failed waits {outcome.failed_waits}); "
        f"last job end → TaskCompleted p50 {d['p50']:.1f} s, p95 {d['p95']:.1f} s, "
        f"max {d['max']:.1f} s; requests by kind {outcome.requests_by_kind}; "
        f"posting {outcome.post_seconds:.1f} s; wall {outcome.wall_seconds:.0f} s; "
        f"harness CPU {outcome.harness_cpu_seconds:.1f} s"
    )
    return head + "\n".join(rows) + tail


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.service_load", description=__doc__.split("\n")[0]
    )
    p.add_argument("--waits", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=10)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument(
        "--store",
        default="",
        help="a postgresql:// URL (a fresh schema is made in it); default SQLite for one "
        "replica, the local test database for several",
    )
    p.add_argument("--limit", type=float, default=1200.0, help="give up after (s of wall time)")
    p.add_argument(
        "--settle", type=float, default=10.0, help="watch for duplicates this long after the last"
    )
    p.add_argument(
        "--job-seconds",
        type=float,
        nargs=2,
        default=[20.0, 60.0],
        metavar=("FIRST", "LAST"),
        help="each job ends between FIRST and LAST seconds after its wait is posted",
    )
    p.add_argument("--failed-share", type=float, default=0.02)
    p.add_argument("--wait-timeout", default="1h")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, help="write the numbers here")
    p.add_argument(
        "--fast",
        action="store_true",
        help="the tests' sub-second polling, leases and retries instead of the service's defaults",
    )
    return p


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # the replicas and the schema go too


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handling = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _stop) if handling else None
    try:
        outcome = run(args)
    finally:
        if handling:
            signal.signal(signal.SIGTERM, before)
    print(table(outcome))
    for failure in outcome.failures:
        print(f"FAILED: {failure}")
    for example in outcome.examples:
        print(f"  {example}")
    if args.json:
        args.json.write_text(json.dumps(outcome.summary(), indent=2, default=str) + "\n")
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
