"""``python -m bench.soak``: ``amlwait serve`` on a real clock, one wait of N jobs.

The benchmark's scenario (:mod:`bench.scenario`, the same seed and jobs) with every timeline
compressed (``--scale``, by default so that the last job ends after ``--minutes``), played
in real time by three processes besides this driver:

1. **the workspace**: the benchmark's simulator (:class:`bench.sim.Simulator`: ARM's jobs
   API, its read bucket, the same injected 500s and dropped connections, 30-80 ms of
   latency per answer) on a clock that starts when the wait is created, and Event Grid:
   every status change is POSTed to the service's webhook as the virtual benchmark
   delivers it (:func:`bench.service_strategy.event_schedule`: 0.3-2 s after the change,
   1 % of the events lost, half of those of failed runs), one event a request, at most
   ``EVENT_CONCURRENCY`` in flight, retried like Event Grid when refused. It notes when it
   first served each job in its final status: that is when the service learnt it
   (detection latency = that moment - the job's end).
2. **the fake Azure DevOps** plan API (:class:`amlwait.service.testing.FakeDevOps`), which
   reports each TaskCompleted it answered.
3. **the service**: ``python -m amlwait.service`` with its defaults and a SQLite store. The
   wait is created as ``InvokeRESTAPI@1`` creates it (tag and job count).

The driver reads the service's CPU (utime + stime) and peak RSS (VmHWM) from ``/proc``,
asks ``/healthz`` every ``HEALTH_EVERY`` s (how late the service's event loop answers),
and compares the service's CPU per 1,000 status changes with the virtual clock's figure for
the same jobs and scale (``python -m bench --strategies service``, its ``cpu_per_1000_changes``;
run here unless ``--virtual-json`` gives it or ``--no-virtual``). It exits 1 when a check
fails: the TaskCompleted missing, sent twice or with the wrong result, a job whose end the
service never read, the run past ``--limit``, or the ratio over ``--max-ratio``.

    python -m bench.soak --jobs 10000 --minutes 20 --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import httpx

from amlwait.service.testing import (
    EVENTGRID_KEY,
    FakeDevOps,
    ServiceProcess,
    callback_headers,
    stop_process,
    wait_body,
)
from amlwait.workspace.server import ServerThread
from amlwait.workspace.throttle import Throttle
from bench import procfs
from bench.child import summarise
from bench.report import _cell
from bench.scenario import MAX_RUN, TAG, ScriptedJob, make_jobs
from bench.service_load import DEFAULT_FLAGS as SERVE_DEFAULTS
from bench.service_strategy import event_of, event_schedule, status_changes
from bench.sim import LATENCY, WS, Simulator, _create_app, _PagedBackend, _Slot

EVENT_CONCURRENCY = 8  # Event Grid deliveries in flight at once
EVENT_ATTEMPTS = 5  # a refused delivery is sent again after 1, 2, 4, 8 s
HEALTH_EVERY = 2.0  # seconds between two GET /healthz
SAMPLE_EVERY = 5.0  # seconds between two readings of the service's CPU and RSS
START_TIMEOUT = 60.0  # seconds a helper process may take to say where it listens


# -- the workspace process --------------------------------------------------------------


class GoClock:
    """Real time that stands still until :meth:`go`, then runs: the scenario starts when
    the wait is created, not when the workspace does. Its time lags the system's by the
    wait before ``go``; :meth:`real` converts."""

    def __init__(self) -> None:
        self.origin = time.time()
        self.went: float | None = None

    def now(self) -> float:
        went = self.went
        return self.origin if went is None else self.origin + (time.time() - went)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def go(self) -> None:
        self.went = time.time()

    def real(self, moment: float) -> float:
        """``moment`` of this clock as a system time."""
        return moment + ((self.went or self.origin) - self.origin)


class _ObservedBackend(_PagedBackend):
    """The simulator's backend, noting when it first answered each job in its final
    status (by GET or in a LIST page): the moment the service learnt the job ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.final: dict[str, str] = {}
        self.seen: dict[str, float] = {}

    def _note(self, slots: list[_Slot]) -> None:
        for slot in slots:
            view = slot.view
            if view is None:
                continue
            name = view.ref.name
            if name not in self.seen and view.status == self.final.get(name):
                self.seen[name] = self.now()

    def get_document(self, ref: Any) -> bytes | None:
        with self.lock:
            slot = self._slot_of(ref)
            if slot is None:
                return None
            slot = self._current(slot, self._offset())
            if slot.view is None:
                return None
            self._note([slot])
            return slot.body

    def list_documents(self, workspace: Any, query: Any) -> tuple[list[bytes], str | None]:
        with self.lock:
            slots, token = self._page(workspace, query)
            self._note(slots)
            return [slot.body for slot in slots], token


class _Latency:
    """ARM's 30-80 ms per answer (the virtual benchmark's SimulatedNetwork, server-side)."""

    def __init__(self, app: Any, seed: int) -> None:
        self.app = app
        self.rng = random.Random(seed * 104729 + 3)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(self.rng.uniform(*LATENCY))
        await self.app(scope, receive, send)


class _SoakSimulator(Simulator):
    """The benchmark's simulator with :class:`_ObservedBackend` and ARM's latency."""

    def __init__(self, jobs: list[ScriptedJob], clock: GoClock, seed: int) -> None:
        super().__init__([], clock, seed=seed)
        self.seed = seed
        backend = _ObservedBackend(clock, self.workspace.start_time)
        self.workspace.backend = backend
        for job in jobs:
            self.workspace.add_job(WS, job.name, job.timeline, tags={TAG: "bench"})
        backend.final = {job.name: job.final_status for job in jobs}

    def __enter__(self) -> _SoakSimulator:
        backend = self.workspace.backend
        assert isinstance(backend, _ObservedBackend)
        app = _create_app(
            backend,
            settings=self.workspace.settings,
            clock=self.clock,
            log=self.log,
            faults=self.workspace.faults,
            throttle=Throttle(self.clock),
        )
        self._server = ServerThread(_Latency(app, self.seed))
        self._server.start()
        self.endpoint = self._server.endpoint
        return self


class _Deliveries:
    """What Event Grid's side saw: how late each delivery left, how long it took."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.answers: list[float] = []
        self.sent = 0
        self.refused = 0
        self.failed = 0


async def _deliver(
    deliveries: list[tuple[float, str, str, int]],
    url: str,
    clock: GoClock,
    seen: _Deliveries,
) -> None:
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    limits = httpx.Limits(max_connections=EVENT_CONCURRENCY)
    transport = httpx.AsyncHTTPTransport(socket_options=nodelay, limits=limits)
    slots = asyncio.Semaphore(EVENT_CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30, transport=transport) as client:

        async def post(event: dict[str, Any]) -> None:
            try:
                for attempt in range(EVENT_ATTEMPTS):
                    started = time.monotonic()
                    try:
                        answer = await client.post(
                            "/v1/events/eventgrid", params={"key": EVENTGRID_KEY}, json=[event]
                        )
                        ok = answer.status_code < 300
                    except httpx.HTTPError:
                        ok = False
                    seen.answers.append(time.monotonic() - started)
                    seen.sent += 1
                    if ok:
                        return
                    seen.refused += 1
                    await asyncio.sleep(2.0**attempt)
                seen.failed += 1
            finally:
                slots.release()

        tasks: set[asyncio.Task[None]] = set()
        for delivery in deliveries:
            early = delivery[0] - clock.now()
            if early > 0:
                await asyncio.sleep(early)
            await slots.acquire()
            seen.lags.append(clock.now() - delivery[0])
            task = asyncio.ensure_future(post(event_of(delivery)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)


async def _deliver_until_stopped(
    deliveries: list[tuple[float, str, str, int]], url: str, clock: GoClock, seen: _Deliveries
) -> bool:
    """Deliver until every event is out or the driver says stop; True when all went out."""
    sending = asyncio.ensure_future(_deliver(deliveries, url, clock, seen))
    stopping = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    await asyncio.wait({sending, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        await stopping
    sending.cancel()
    results = await asyncio.gather(sending, return_exceptions=True)
    return not isinstance(results[0], BaseException)


def workspace_main(config: dict[str, Any]) -> None:
    """The workspace process: print the endpoint, start on ``go``, summarise on ``stop``."""
    jobs = make_jobs(config["n"], config["seed"], max_run=config["max_run"], scale=config["scale"])
    clock = GoClock()
    with _SoakSimulator(jobs, clock, config["seed"]) as simulator:
        _say({"endpoint": simulator.endpoint})
        command = json.loads(sys.stdin.readline())
        clock.go()
        start = simulator.start_time
        deliveries = event_schedule(jobs, start, config["seed"])
        seen = _Deliveries()
        complete = asyncio.run(_deliver_until_stopped(deliveries, command["service"], clock, seen))
        backend = simulator.workspace.backend
        assert isinstance(backend, _ObservedBackend)
        with backend.lock:
            observed = dict(backend.seen)
        known = {name: (at, backend.final[name]) for name, at in observed.items()}
        detection = summarise(jobs, known, start, start, start, "service")
        _say(
            {
                "summary": {
                    **{k: v for k, v in detection.items() if k.startswith(("latency", "detect"))},
                    "undetected": detection["undetected"],
                    "arm_requests": simulator.log.count,
                    "start_real": clock.real(start),
                    "last_end_real": clock.real(start + max(job.ends_at for job in jobs)),
                    "events_scheduled": len(deliveries),
                    "events_all_sent": complete,
                    "event_requests": seen.sent,
                    "event_refused": seen.refused,
                    "event_failed": seen.failed,
                    "event_lag_s": _spread(seen.lags),
                    "event_answer_s": _spread(seen.answers),
                    "cpu_s": _own_cpu(),
                }
            }
        )


# -- the fake Azure DevOps process -------------------------------------------------------


def devops_main() -> None:
    """The fake plan API: its URL, then a line per TaskCompleted it answered; on ``stop``
    (or end of input) a summary of every call."""
    devops = FakeDevOps().start()
    _say({"org_url": devops.org_url})
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    told = 0  # calls looked at, in arrival order, each once it was answered
    while True:
        stopping = stop.wait(0.05)
        calls = devops.snapshot()
        while told < len(calls) and calls[told].status != 0:
            call = calls[told]
            if call.is_task_completed:
                _say({"completed": {"at": time.time(), "status": call.status, "body": call.json}})
            told += 1
        if stopping:
            break
    calls = devops.snapshot()
    kinds = Counter(f"{call.method} {call.path.rsplit('/', 1)[-1]}" for call in calls)
    _say({"summary": {"calls": len(calls), "by_kind": dict(kinds), "cpu_s": _own_cpu()}})
    devops.stop()


# -- the driver -------------------------------------------------------------------------


class _Helper:
    """A role of this module in its own process, talking JSON lines."""

    def __init__(self, role: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.soak", "--role", role, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                with self._arrived:
                    self.lines.append(json.loads(line))
                    self._arrived.notify_all()
        with self._arrived:
            self._arrived.notify_all()

    def first(self, key: str, timeout: float) -> Any:
        """The value of the first line that has ``key``; RuntimeError after ``timeout``."""
        give_up = time.monotonic() + timeout
        with self._arrived:
            while True:
                for line in self.lines:
                    if key in line:
                        return line[key]
                left = give_up - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise RuntimeError(f"no {key!r} from the {self.process.args[4]} process")
                self._arrived.wait(left)

    def every(self, key: str) -> list[Any]:
        with self._arrived:
            return [line[key] for line in self.lines if key in line]

    def tell(self, message: dict[str, Any] | str) -> None:
        assert self.process.stdin is not None
        text = message if isinstance(message, str) else json.dumps(message)
        try:
            self.process.stdin.write(text + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def cpu_s(self) -> float | None:
        return procfs.cpu_seconds(self.process.pid)

    def close(self) -> None:
        stop_process(self.process)


class _OrgUrl:
    """What :class:`ServiceProcess` needs of the fake Azure DevOps (it runs elsewhere)."""

    def __init__(self, org_url: str) -> None:
        self.org_url = org_url


def default_scale(n: int, seed: int, minutes: float, max_run: float) -> float:
    """The scale (4 significant digits) at which the last job ends after ``minutes``."""
    last = max(job.ends_at for job in make_jobs(n, seed, max_run=max_run))
    return float(f"{minutes * 60 / last:.4g}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--role", choices=["workspace", "devops"], help=argparse.SUPPRESS)
    parser.add_argument("config", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the one wait")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-run", type=float, default=MAX_RUN)
    parser.add_argument(
        "--minutes", type=float, default=20.0, help="real minutes until the last job ends"
    )
    parser.add_argument(
        "--scale", type=float, help="multiply every timeline by this (default: from --minutes)"
    )
    parser.add_argument(
        "--limit",
        type=float,
        help="give up after this many real seconds from the wait's creation "
        "(default: the scenario's length + 10 min)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=10.0,
        help="seconds to watch for a second TaskCompleted after the first",
    )
    parser.add_argument(
        "--service-args",
        default="",
        help="extra flags for amlwait serve, after its defaults (e.g. '--event-poll-interval 2s')",
    )
    parser.add_argument("--max-ratio", type=float, default=2.0)
    virtual = parser.add_mutually_exclusive_group()
    virtual.add_argument(
        "--virtual-json",
        type=Path,
        help="the virtual clock's figure from this `python -m bench --json` file",
    )
    virtual.add_argument(
        "--no-virtual", action="store_true", help="do not compare with the virtual clock"
    )
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    return parser


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak; every number, and the checks with whether each passed."""
    scale = args.scale or default_scale(args.jobs, args.seed, args.minutes, args.max_run)
    jobs = make_jobs(args.jobs, args.seed, max_run=args.max_run, scale=scale)
    length = max(job.ends_at for job in jobs)
    limit = args.limit if args.limit is not None else length + 600
    expected = "succeeded" if all(j.final_status == "Completed" for j in jobs) else "failed"
    config = {"n": args.jobs, "seed": args.seed, "max_run": args.max_run, "scale": scale}
    report: dict[str, Any] = {
        "jobs": args.jobs,
        "seed": args.seed,
        "scale": scale,
        "scenario_s": round(length, 1),
        "status_changes": status_changes(jobs),
        "expected_result": expected,
        "service_args": SERVE_DEFAULTS + args.service_args.split(),
    }
    devops = _Helper("devops")
    workspace = _Helper("workspace", json.dumps(config))
    service: ServiceProcess | None = None
    samples: list[dict[str, float]] = []
    health: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            org_url = devops.first("org_url", START_TIMEOUT)
            endpoint = workspace.first("endpoint", START_TIMEOUT)
            service = ServiceProcess(
                Path(folder) / "soak.db",
                cast(FakeDevOps, _OrgUrl(org_url)),
                endpoint,
                report["service_args"],
            ).start()
            assert service.process is not None
            pid = service.process.pid
            cpu_before = procfs.cpu_seconds(pid) or 0.0
            created = time.time()
            answer = service.post_wait(
                wait_body(TAG, args.jobs, timeout="24h", workspace_ref=WS),
                callback_headers(org_url),
            )
            if answer.status_code != 202:
                raise RuntimeError(f"the service refused the wait: {answer.text}")
            workspace.tell({"service": service.url})
            completed_at = _watch(service, devops, created, limit, samples, health)
            report["timed_out"] = completed_at is None
            if completed_at is not None:
                time.sleep(args.settle)
            cpu_after = procfs.cpu_seconds(pid) or 0.0
            memory = procfs.memory_mb(pid)
            metrics = _metrics(service)
            workspace.tell("stop")
            devops.tell("stop")
            detection = workspace.first("summary", 120)
            calls = devops.first("summary", 30)
        finally:
            stderr = service.stderr() if service is not None else ""
            if service is not None:
                service.stop()
            workspace.close()
            devops.close()
    completions = devops.every("completed")
    accepted = [c for c in completions if c["status"] == 200]
    service_cpu = cpu_after - cpu_before
    report.update(
        service_cpu_s=round(service_cpu, 2),
        service_cpu_total_s=round(cpu_after, 2),
        cpu_per_1000_changes=round(1000 * service_cpu / report["status_changes"], 4),
        service_peak_rss_mb=round(memory.get("VmHWM", float("nan")), 1),
        service_rss_end_mb=round(memory.get("VmRSS", float("nan")), 1),
        arm_requests=detection["arm_requests"],
        service_metrics=metrics,
        detection=detection,
        devops=calls,
        completions=completions,
        completed_after_s=round(accepted[0]["at"] - created, 1) if accepted else None,
        last_end_to_completed_s=(
            round(accepted[0]["at"] - detection["last_end_real"], 2) if accepted else None
        ),
        wall_s=round(time.time() - created, 1),
        healthz_s=_spread(health),
        samples=samples,
        busiest_cpu_share=max((s["cpu_share"] for s in samples), default=None),
        service_warnings=[line for line in stderr.splitlines() if line.strip()][-20:],
    )
    checks = {
        "TaskCompleted arrived": bool(accepted),
        "TaskCompleted exactly once": len(completions) == 1 and len(accepted) == 1,
        f"TaskCompleted result is {expected}": bool(accepted)
        and all((c["body"] or {}).get("result") == expected for c in accepted),
        "every job's end read by the service": detection["undetected"] == 0,
        f"finished within --limit {limit:.0f} s": not report["timed_out"],
    }
    virtual = _virtual(args, config)
    if virtual is not None:
        ratio = report["cpu_per_1000_changes"] / virtual["cpu_per_1000_changes"]
        report["virtual"] = virtual
        report["ratio_to_virtual"] = round(ratio, 3)
        checks[f"CPU per 1,000 changes within {args.max_ratio:g}x of the virtual clock's"] = (
            ratio <= args.max_ratio
        )
    report["checks"] = checks
    return report


def _watch(
    service: ServiceProcess,
    devops: _Helper,
    created: float,
    limit: float,
    samples: list[dict[str, float]],
    health: list[float],
) -> float | None:
    """Sample the service until its TaskCompleted arrives (its time) or ``limit`` passes."""
    assert service.process is not None
    pid = service.process.pid
    last_cpu, last_at = procfs.cpu_seconds(pid) or 0.0, time.time()
    next_sample = next_health = next_say = last_at
    client = httpx.Client(base_url=service.url, timeout=30)
    try:
        while time.time() - created < limit:
            accepted = [c for c in devops.every("completed") if c["status"] == 200]
            if accepted:
                return float(accepted[0]["at"])
            if service.process.poll() is not None:
                raise RuntimeError(f"the service exited: {service.stderr()[-2000:]}")
            now = time.time()
            if now >= next_health:
                started = time.monotonic()
                try:
                    client.get("/healthz")
                    health.append(time.monotonic() - started)
                except httpx.HTTPError:
                    health.append(float("inf"))
                next_health = now + HEALTH_EVERY
            if now >= next_sample:
                cpu = procfs.cpu_seconds(pid) or last_cpu
                memory = procfs.memory_mb(pid)
                share = (cpu - last_cpu) / max(now - last_at, 1e-3)
                samples.append(
                    {
                        "t": round(now - created, 1),
                        "cpu_s": round(cpu, 2),
                        "cpu_share": round(share, 3),
                        "rss_mb": round(memory.get("VmRSS", 0.0), 1),
                    }
                )
                last_cpu, last_at = cpu, now
                next_sample = now + SAMPLE_EVERY
            if now >= next_say:
                sample = samples[-1] if samples else {}
                print(
                    f"soak: {now - created:.0f} s, service CPU {sample.get('cpu_s')} s, "
                    f"RSS {sample.get('rss_mb')} MB",
                    file=sys.stderr,
                    flush=True,
                )
                next_say = now + 60
            time.sleep(0.1)
    finally:
        client.close()
    return None


def _metrics(service: ServiceProcess) -> dict[str, float]:
    try:
        text = service.get("/metrics").text
    except httpx.HTTPError:
        return {}
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            try:
                found[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return found


def _virtual(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any] | None:
    """The virtual clock's service row for the same jobs and scale (None: not compared)."""
    if args.no_virtual:
        return None
    if args.virtual_json is not None:
        document = json.loads(args.virtual_json.read_text())
        rows = [
            {**result, "scale": run.get("scale", 1.0)}
            for run in document["runs"]
            if run["n"] == config["n"] and run["seed"] == config["seed"]
            for result in run["results"]
            if result["strategy"] == "service"
        ]
        if not rows:
            raise SystemExit(f"{args.virtual_json} has no service row for N={config['n']}")
        row = rows[-1]
        if abs(row["scale"] - config["scale"]) > 1e-9 * config["scale"]:
            raise SystemExit(
                f"{args.virtual_json} was run at --scale {row['scale']}, the soak at "
                f"{config['scale']}: run `python -m bench --scale {config['scale']}` first"
            )
    else:
        from bench.runner import run_child

        print("soak: running the virtual clock's service row", file=sys.stderr, flush=True)
        row = run_child({"strategy": "service", "speed": None, **config})
        if row.get("error"):
            raise SystemExit(f"the virtual run failed: {row['error']}")
    keys = (
        "cpu_per_1000_changes",
        "service_cpu_s",
        "status_changes",
        "strategy_cpu_s",
        "cpu_s",
        "peak_rss_mb",
        "requests",
        "latency_p50_s",
        "latency_p95_s",
        "latency_max_s",
        "exit_after_last_end_s",
        "scale",
    )
    return {key: row.get(key, config["scale"] if key == "scale" else None) for key in keys}


def markdown(report: dict[str, Any]) -> str:
    detection = report["detection"]
    virtual = report.get("virtual") or {}
    real = {
        "service CPU s": report["service_cpu_s"],
        "CPU per 1,000 status changes s": report["cpu_per_1000_changes"],
        "peak RSS MB": report["service_peak_rss_mb"],
        "ARM requests": report["arm_requests"],
        "detect p50 s": detection["latency_p50_s"],
        "detect p95 s": detection["latency_p95_s"],
        "detect max s": detection["latency_max_s"],
        "last end → TaskCompleted s": report["last_end_to_completed_s"],
    }
    virtual_keys = [
        "service_cpu_s",
        "cpu_per_1000_changes",
        "peak_rss_mb",
        "requests",
        "latency_p50_s",
        "latency_p95_s",
        "latency_max_s",
        "exit_after_last_end_s",
    ]
    lines = [
        f"N = {report['jobs']:,}, seed {report['seed']}, timelines x{report['scale']:g} "
        f"(last job ends after {report['scenario_s']:,.0f} s), "
        f"{report['status_changes']:,} status changes",
        "",
        "| clock | " + " | ".join(real) + " |",
        "|---|" + "---:|" * len(real),
        "| real (soak) | " + " | ".join(_cell(v) for v in real.values()) + " |",
    ]
    if virtual:
        lines.append(
            "| virtual | " + " | ".join(_cell(virtual.get(k)) for k in virtual_keys) + " |"
        )
        lines += ["", f"Ratio real / virtual CPU per 1,000 changes: {report['ratio_to_virtual']}"]
    events = detection
    lines += [
        "",
        f"- Event Grid: {events['events_scheduled']:,} events, {events['event_requests']:,} "
        f"requests ({events['event_refused']} refused, {events['event_failed']} given up); "
        f"delivery lag behind schedule {_spread_text(events['event_lag_s'])}; webhook "
        f"answer {_spread_text(events['event_answer_s'])}",
        f"- GET /healthz answered in {_spread_text(report['healthz_s'])}; busiest "
        f"{SAMPLE_EVERY:g}-s window used {report['busiest_cpu_share']} of a CPU",
        f"- TaskCompleted: {len(report['completions'])} "
        f"({', '.join(str((c['body'] or {}).get('result')) for c in report['completions'])}), "
        f"{report['completed_after_s']} s after the wait was created",
        f"- Workspace process CPU {detection['cpu_s']} s; fake DevOps CPU "
        f"{report['devops']['cpu_s']} s ({report['devops']['calls']} calls)",
        "",
        "Checks:",
        "",
        *[f"- {name}: {'ok' if ok else 'FAILED'}" for name, ok in report["checks"].items()],
    ]
    return "\n".join(lines)


def _spread(values: list[float]) -> dict[str, float | None]:
    """p50, p95 and the largest of ``values``."""
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": at(0.50), "p95": at(0.95), "max": round(ordered[-1], 3)}


def _spread_text(spread: dict[str, float | None]) -> str:
    return f"p50 {spread['p50']} s, p95 {spread['p95']} s, max {spread['max']} s"


def _own_cpu() -> float:
    usage = os.times()
    return round(usage.user + usage.system, 2)


def _say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.role == "workspace":
        workspace_main(json.loads(args.config))
        return 0
    if args.role == "devops":
        devops_main()
        return 0
    report = soak(args)
    text = markdown(report)
    print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
