"""``python -m bench.soak`` tiny: the workspace, the fake Azure DevOps and the service run as
three processes on a real clock, the wait ends with exactly one TaskCompleted, and a check
that fails (here the CPU ratio against a virtual figure made too small) makes the exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.scenario import MAX_RUN, make_jobs
from bench.soak import default_scale

ROOT = Path(__file__).resolve().parents[1]
JOBS = 50
MINUTES = 0.05  # the last job ends after 3 s


def test_tiny_soak_three_processes_one_task_completed_and_a_failed_check_exits_1(
    tmp_path: Path,
) -> None:
    scale = default_scale(JOBS, 1, MINUTES, MAX_RUN)
    virtual = tmp_path / "virtual.json"
    row = {"strategy": "service", "cpu_per_1000_changes": 1e-6, "service_cpu_s": 1e-6}
    virtual.write_text(
        json.dumps({"runs": [{"n": JOBS, "seed": 1, "scale": scale, "results": [row]}]})
    )
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.soak",
            "--jobs", str(JOBS), "--minutes", str(MINUTES), "--settle", "0.5",
            # a lost Failed event is found by the safety net within seconds, not 5 minutes
            "--service-args", "--event-poll-interval 2s",
            "--virtual-json", str(virtual), "--json", str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(out.read_text())
    checks = report["checks"]
    ratio_check = next(name for name in checks if name.startswith("CPU per 1,000"))
    assert checks.pop(ratio_check) is False
    assert all(checks.values()), checks
    jobs = make_jobs(JOBS, 1, scale=scale)
    assert report["status_changes"] == sum(len(job.timeline) - 1 for job in jobs)
    assert [c["status"] for c in report["completions"]] == [200]
    assert report["completions"][0]["body"]["result"] == report["expected_result"] == "failed"
    assert report["detection"]["detected"] == JOBS
    events = report["detection"]
    assert events["events_scheduled"] > 0
    if events["events_all_sent"]:
        assert events["event_requests"] >= events["events_scheduled"]
    else:  # stopped at the TaskCompleted: events of the last second may still have been due
        assert events["event_requests"] >= 0.9 * events["events_scheduled"]
    assert report["arm_requests"] > 0
    assert report["service_metrics"]["amlwait_eventgrid_events_total"] > 0
    assert report["service_cpu_s"] > 0 and report["service_peak_rss_mb"] > 10
    assert report["ratio_to_virtual"] > 2
    assert "| real (soak) |" in done.stdout and "| virtual |" in done.stdout
