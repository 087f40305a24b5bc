"""``python -m bench``: run every strategy against the same simulated workspace."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import startup
from bench.report import chart, markdown_table, targets
from bench.runner import run_all
from bench.scenario import MAX_RUN
from bench.strategies import SKIPPED, STRATEGIES

QUICK_N = 100
QUICK_SCALE = 0.1
REAL_TIME_N = 20
# How much faster than real time the real-clock check runs. At 600x one loopback request
# (~3 ms of CPU) lasts ~1.8 simulated seconds, far above ARM's 30-80 ms, and the serial
# loops slow down: the comparison needs a slower clock.
REAL_TIME_SPEED = 60.0
REAL_TIME_MAX_RUN = 3600.0
# The nominal re-read interval of each strategy, to judge real-time agreement against.
NOMINAL_INTERVAL = {
    "naive-60s": 60.0,
    "sdk-stream": 60.0,
    "template-15s": 15.0,
    "amlwait-get": 15.0,
    "amlwait-list": 15.0,
}


# Real-clock scenarios of ``amlwait serve`` (each its own module and processes): the
# arguments of each run. They run after the virtual-clock tables, one at a time, so that
# nothing else competes for the CPU.
REAL_CLOCK: dict[str, list[list[str]]] = {
    "load": [
        ["bench.service_load", "--waits", "1000", "--jobs", "10"],
        ["bench.service_load", "--waits", "1000", "--jobs", "10", "--replicas", "2"],
    ],
    "soak": [["bench.soak", "--jobs", "10000", "--minutes", "20"]],
}
REAL_CLOCK_LIMIT = 3600.0  # seconds of wall time for one scenario, whatever it says


def real_clock(name: str) -> list[dict[str, Any]]:
    """Run the scenario ``name``'s commands; each gives its printed table, its numbers
    (``--json``) and whether its own checks passed."""
    runs = []
    for argv in REAL_CLOCK[name]:
        with tempfile.TemporaryDirectory() as folder:
            numbers = Path(folder) / "numbers.json"
            command = [sys.executable, "-m", *argv, "--json", str(numbers)]
            began = time.perf_counter()
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=REAL_CLOCK_LIMIT
                )
                printed, code = done.stdout + done.stderr[-2000:], done.returncode
            except subprocess.TimeoutExpired:
                printed, code = f"stopped after {REAL_CLOCK_LIMIT:g} s", -1
            runs.append(
                {
                    "command": "python -m " + " ".join(argv),
                    "passed": code == 0,
                    "printed": printed.strip(),
                    "numbers": json.loads(numbers.read_text()) if numbers.exists() else None,
                    "harness_wall_s": round(time.perf_counter() - began, 1),
                }
            )
    return runs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("-n", type=int, nargs="+", default=[100, 1000], help="batch sizes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--max-run", type=float, default=MAX_RUN, help="longest Running time, seconds"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every time of every job's timeline"
    )
    parser.add_argument(
        "--strategies", nargs="+", choices=sorted(STRATEGIES), default=list(STRATEGIES)
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=os.cpu_count() or 1,
        help="children run side by side (default: the CPU count)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"CI smoke test: N={QUICK_N}, timelines x{QUICK_SCALE:g}, no start-up",
    )
    parser.add_argument(
        "--startup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure CLI start-up against import azure.ai.ml",
    )
    parser.add_argument(
        "--check-real-time",
        action="store_true",
        help=f"also run N={REAL_TIME_N} on a real clock --real-time-speed times "
        "faster and compare with the virtual clock",
    )
    parser.add_argument(
        "--real-time-speed",
        type=float,
        default=REAL_TIME_SPEED,
        help="how many times faster than real time the --check-real-time run goes",
    )
    parser.add_argument(
        "--real-clock",
        nargs="+",
        choices=sorted(REAL_CLOCK),
        default=[],
        help="also run these real-clock service scenarios, one after another: "
        + "; ".join(
            f"{name}: {' / '.join(' '.join(a) for a in runs)}" for name, runs in REAL_CLOCK.items()
        ),
    )
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument("--chart", type=Path, help="write the chart (PNG) here")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        help="run nothing: redraw the tables, targets and chart from earlier --json files",
    )
    return parser


def _configs(
    n: int, args: argparse.Namespace, speed: float | None = None, max_run: float | None = None
) -> list[dict[str, Any]]:
    # On a real clock only the polling strategies run (the service's events need the
    # virtual clock's schedule).
    names = [name for name in args.strategies if not speed or name in NOMINAL_INTERVAL]
    return [
        {
            "strategy": name,
            "n": n,
            "seed": args.seed,
            "max_run": max_run or args.max_run,
            "speed": speed,
            "scale": args.scale,
        }
        for name in names
    ]


def _run(
    n: int,
    args: argparse.Namespace,
    *,
    speed: float | None = None,
    max_run: float | None = None,
    parallel: int | None = None,
) -> dict[str, Any]:
    began = time.perf_counter()
    configs = _configs(n, args, speed, max_run)
    results = run_all(configs, parallel or args.parallel)
    return {
        "n": n,
        "seed": args.seed,
        "max_run": configs[0]["max_run"],
        "scale": args.scale,
        "clock": f"real x{speed:g}" if speed else "virtual",
        "results": results,
        "skipped": SKIPPED,
        "harness_wall_s": round(time.perf_counter() - began, 1),
    }


def _compare(virtual: dict[str, Any], real: dict[str, Any], speed: float) -> tuple[str, bool]:
    lines = [
        f"Virtual clock against real time x{speed:g} (N={REAL_TIME_N}); latencies "
        "as a share of the strategy's nominal re-read interval",
        "",
        "| strategy | requests virtual | requests real | p50 virtual | p50 real "
        "| p95 virtual | p95 real | agree |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    agree_all = True
    for v in virtual["results"]:
        name = v["strategy"]
        if name not in NOMINAL_INTERVAL:
            continue
        r = next(x for x in real["results"] if x["strategy"] == name)
        interval = NOMINAL_INTERVAL[name]
        share = [
            (x.get(key) or 0) / interval
            for x in (v, r)
            for key in ("latency_p50_s", "latency_p95_s")
        ]
        requests_close = abs(v["requests"] - r["requests"]) <= 0.15 * max(v["requests"], 1)
        latency_close = abs(share[1] - share[3]) <= 0.5 and abs(share[0] - share[2]) <= 0.5
        agree = requests_close and latency_close and not v.get("error") and not r.get("error")
        agree_all &= agree
        lines.append(
            f"| {name} | {v['requests']:,} | {r['requests']:,} | {share[0]:.2f} | {share[2]:.2f} "
            f"| {share[1]:.2f} | {share[3]:.2f} | {'yes' if agree else 'NO'} |"
        )
    return "\n".join(lines), agree_all


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.n = [QUICK_N]
        args.scale = QUICK_SCALE
    document: dict[str, Any] = {
        "machine": machine(),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    sections: list[str] = []
    runs: list[dict[str, Any]] = []

    def show(run: dict[str, Any]) -> None:
        sections.append(markdown_table(run) + f"\n\nharness wall time: {run['harness_wall_s']} s")
        print(sections[-1] + "\n", flush=True)

    if args.from_json:
        runs = [run for path in args.from_json for run in json.loads(path.read_text())["runs"]]
        for run in runs:
            show(run)
    else:
        for n in args.n:
            runs.append(_run(n, args))
            show(runs[-1])
    document["runs"] = runs
    document["targets"] = targets(runs)
    sections.append("Targets:\n\n" + "\n".join(f"- {line}" for line in document["targets"]))
    print(sections[-1] + "\n", flush=True)

    if args.check_real_time and not args.from_json:
        virtual = _run(REAL_TIME_N, args, max_run=REAL_TIME_MAX_RUN)
        speed = args.real_time_speed
        real = _run(REAL_TIME_N, args, speed=speed, max_run=REAL_TIME_MAX_RUN, parallel=1)
        text, agree = _compare(virtual, real, speed)
        document["real_time_check"] = {"virtual": virtual, "real": real, "agree": agree}
        sections.append(text)
        print(text + "\n", flush=True)

    if args.startup if args.startup is not None else not (args.quick or args.from_json):
        document["startup"] = startup.measure()
        text = "Start-up (median of 5, seconds):\n\n" + "\n".join(
            f"- {key}: {value}" for key, value in document["startup"].items()
        )
        sections.append(text)
        print(text + "\n", flush=True)

    for name in args.real_clock if not args.from_json else []:
        document.setdefault("real_clock", {})[name] = real_clock(name)
        for run in document["real_clock"][name]:
            verdict = "its checks passed" if run["passed"] else "**a check FAILED**"
            text = (
                f"Real clock, `{run['command']}` ({verdict}; {run['harness_wall_s']} s):"
                f"\n\n{run['printed']}"
            )
            sections.append(text)
            print(text + "\n", flush=True)

    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text("\n\n".join(sections) + "\n")
    if args.chart:
        chart(runs, args.chart)
    failed = any(r.get("error") for run in runs for r in run["results"]) or any(
        not run["passed"] for runs_ in document.get("real_clock", {}).values() for run in runs_
    )
    return 1 if failed else 0
