"""``python -m bench --quick`` works end to end: a smoke test, not a timed assertion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WAITING = [
    "naive-60s",
    "sdk-stream",
    "template-15s",
    "amlwait-get",
    "amlwait-list",
    "amlwait-mlflow-tag",
    "amlwait-mlflow-notag",
    "service",
    "amlwait-pipeline",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| amlwait-list |" in done.stdout
    return json.loads(out.read_text())


def test_quick_bench_runs_every_strategy_to_the_end_and_detects_every_job(
    quick_run: dict,  # type: ignore[type-arg]
) -> None:
    (run,) = quick_run["runs"]
    results = {result["strategy"]: result for result in run["results"]}
    assert set(WAITING) <= set(results)
    for name in WAITING:
        result = results[name]
        assert result["error"] is None, name
        assert result["detected"] + result["wrong_outcome"] == run["n"], name
        assert result["undetected"] == 0, name
        # Every strategy but the listing ones reads each job at least once by GET (the
        # service only when an event says a job ended, and some events are lost).
        least = {"amlwait-list": 1, "service": run["n"] // 2, "amlwait-pipeline": 1}.get(
            name, run["n"]
        )
        assert result["requests"] >= least, name
        assert result["requests"] == result["server_requests"], name
        assert 0 <= result["latency_min_s"] <= result["latency_p50_s"], name
        assert result["latency_p50_s"] <= result["latency_p95_s"] <= result["latency_max_s"], name
        assert result["exit_after_last_end_s"] >= 0, name
        if name == "service":
            assert result["agent_minutes"] == 0  # an agentless server job holds no agent
        else:
            assert result["agent_minutes"] > 0, name
        assert result["cpu_s"] > 0 and result["peak_rss_mb"] > 10, name


def test_quick_bench_reads_the_batch_by_listing_with_far_fewer_requests(
    quick_run: dict,  # type: ignore[type-arg]
) -> None:
    (run,) = quick_run["runs"]
    results = {result["strategy"]: result for result in run["results"]}
    assert results["amlwait-list"]["requests"] < results["naive-60s"]["requests"] / 5
    assert results["amlwait-list"]["throttled"] == 0
    assert quick_run["targets"]


def test_quick_bench_service_hears_events_and_verifies_each_end_with_a_read(
    quick_run: dict,  # type: ignore[type-arg]
) -> None:
    (run,) = quick_run["runs"]
    results = {result["strategy"]: result for result in run["results"]}
    service = results["service"]
    # Some events are lost on purpose; the rest (up to the end of the wait) reached the
    # webhook.
    assert 0.9 * service["events_scheduled"] <= service["events_delivered"]
    assert service["events_delivered"] <= service["events_scheduled"]
    assert service["events_scheduled"] < 5 * run["n"]
    # Events make detection a matter of one delivery (at most 2 s) and a GET, not a poll.
    assert service["latency_p95_s"] < results["amlwait-list"]["latency_p50_s"]
    assert service["requests"] < results["naive-60s"]["requests"] / 5
    # The unit the real-clock soak compares: the scenario's status changes, and the service's
    # CPU without the harness threads sharing its child (less than the whole child's).
    assert service["status_changes"] >= service["events_scheduled"]
    assert service["harness_cpu_s"] > 0 and 0 < service["service_cpu_s"] < service["cpu_s"]
    per_1000 = 1000 * service["service_cpu_s"] / service["status_changes"]
    assert abs(service["cpu_per_1000_changes"] - per_1000) < 0.01


def test_quick_bench_submits_one_pipeline_job_and_reports_every_circuit_from_its_steps(
    quick_run: dict,  # type: ignore[type-arg]
) -> None:
    (run,) = quick_run["runs"]
    results = {result["strategy"]: result for result in run["results"]}
    pipeline = results["amlwait-pipeline"]
    # GET the pipeline (404), GET + PUT its one shared component, PUT the pipeline job
    # (a retry of an injected 500 or dropped connection may add one or two).
    assert 4 <= pipeline["submit_requests"] <= 6
    assert pipeline["components_registered"] == 1
    # Every circuit reported from run history, each with the scenario's final status.
    assert pipeline["steps_reported"] == run["n"]
    assert pipeline["detected"] == run["n"] and pipeline["wrong_outcome"] == 0
    # 3 % of the scenario's jobs fail, so the pipeline job (continue_on_step_failure) fails.
    assert pipeline["pipeline_outcome"] == "failed"
    # One job followed, its steps read once at the end: far fewer requests than listing
    # the batch, and every circuit is known only once the pipeline job has ended.
    assert pipeline["requests"] < results["amlwait-list"]["requests"]
    assert pipeline["latency_min_s"] == pipeline["exit_after_last_end_s"]
    assert pipeline["report_bytes"] > 0
