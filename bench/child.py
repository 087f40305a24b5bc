"""One strategy in its own process: ``python -m bench.child CONFIG_JSON`` prints a JSON result.

The child hosts the simulator (same seed, same jobs) in a thread and runs one strategy
against it; the parent measures the child's CPU time and peak RSS with ``wait4``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import traceback
from typing import Any

from amlwait.core.clock import Clock, VirtualClock
from bench import memprofile
from bench.scenario import ScriptedJob, make_jobs
from bench.sim import ScaledClock, SimulatedNetwork, Simulator
from bench.strategies import AGENTLESS, PIPELINE, STRATEGIES, Known


def run(config: dict[str, Any]) -> dict[str, Any]:
    jobs = make_jobs(
        config["n"], config["seed"], max_run=config["max_run"], scale=config.get("scale", 1.0)
    )
    speed = config.get("speed")
    clock: Clock = ScaledClock(speed) if speed else VirtualClock()
    if config["strategy"] == "service":
        if speed:
            raise SystemExit("the service strategy runs on the virtual clock only")
        from bench.service_strategy import EventClock

        clock = EventClock()
    strategy, _ = STRATEGIES[config["strategy"]]
    wall_started = time.perf_counter()
    pipeline = config["strategy"] in PIPELINE
    with Simulator(jobs, clock, seed=config["seed"], pipeline=pipeline) as simulator:
        network = SimulatedNetwork(clock, config["seed"])
        started = clock.now()
        cpu_started = time.thread_time()
        process_cpu_started = time.process_time()
        simulator_cpu_started = simulator.server_cpu()
        error = None
        known: Known = {}
        try:
            known = asyncio.run(strategy(simulator.endpoint, clock, network, jobs, config["seed"]))
        except Exception as failure:  # reported in the table, never hidden
            error = f"{type(failure).__name__}: {failure}"
            traceback.print_exc()
        strategy_cpu = time.thread_time() - cpu_started
        process_cpu = time.process_time() - process_cpu_started
        simulator_cpu = simulator.server_cpu() - simulator_cpu_started
        exited = clock.now()
        server_requests = simulator.log.count
        start_time = simulator.start_time
    result = summarise(jobs, known, start_time, started, exited, config["strategy"])
    result.update(
        requests=network.sent,
        server_requests=server_requests,
        throttled=network.statuses[429],
        server_errors=sum(c for s, c in network.statuses.items() if s >= 500),
        dropped=network.dropped,
        strategy_cpu_s=round(strategy_cpu, 3),
        **extra_counts(config["strategy"], process_cpu - simulator_cpu),
        wall_s=round(time.perf_counter() - wall_started, 3),
        error=error,
    )
    return result


def extra_counts(strategy: str, cpu_beside_simulator: float) -> dict[str, Any]:
    """The strategy's own numbers. For the service, its CPU per 1,000 status changes, to
    compare with the real-clock soak (``bench/soak.py``), which reads the CPU of the service
    process: here the service shares the child with the simulator, the fake Azure DevOps
    and the Event Grid sender, so its CPU is every thread's CPU during the run
    (``cpu_beside_simulator``: the simulator's server thread already taken out) less
    theirs, each read from its own thread's CPU clock. ``strategy CPU s`` (the main thread
    alone) leaves out the store's worker threads and counts the sender."""
    if strategy in PIPELINE:
        from bench.pipeline_strategy import pipeline_counts

        return dict(pipeline_counts)
    if strategy != "service":
        return {}
    from bench.service_strategy import service_counts

    counts: dict[str, Any] = dict(service_counts)
    if counts.get("status_changes"):
        service_cpu = cpu_beside_simulator - counts.get("harness_cpu_s", 0.0)
        counts["service_cpu_s"] = round(service_cpu, 3)
        counts["cpu_per_1000_changes"] = round(1000 * service_cpu / counts["status_changes"], 4)
    return counts


def summarise(
    jobs: list[ScriptedJob],
    known: Known,
    start_time: float,
    started: float,
    exited: float,
    strategy: str,
) -> dict[str, Any]:
    latencies: list[float] = []
    wrong = missed = 0
    for job in jobs:
        seen = known.get(job.name)
        if seen is None:
            missed += 1
        elif seen[1] != job.final_status:
            wrong += 1
        else:
            latencies.append(seen[0] - (start_time + job.ends_at))
    last_end = start_time + max(job.ends_at for job in jobs)
    waited = strategy != "baseline"
    held = strategy not in AGENTLESS  # an agentless server job holds no agent
    return {
        "strategy": strategy,
        "jobs": len(jobs),
        "detected": len(latencies),
        "wrong_outcome": wrong,
        "undetected": missed if waited else 0,
        "latency_p50_s": _quantile(latencies, 0.50),
        "latency_p95_s": _quantile(latencies, 0.95),
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "latency_min_s": round(min(latencies), 3) if latencies else None,
        "exit_after_last_end_s": round(exited - last_end, 3) if waited else None,
        "agent_minutes": round((exited - started) / 60, 2) if waited and held else 0.0,
    }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1], 3)


def main() -> None:
    config = json.loads(sys.argv[1])
    profiler = memprofile.from_environment()
    result = run(config)
    if profiler is not None:
        profiler.finish(config["strategy"], config["n"])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
