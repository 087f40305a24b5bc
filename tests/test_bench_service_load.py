"""``bench.service_load`` in small: real service processes on loopback, jobs that end in
seconds; every wait must get exactly one TaskCompleted with the scripted result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import service_load

from tests.service.conftest import POSTGRES_URL, _postgres_unavailable

# 20 waits of 3 jobs each; every 10th wait (2 of them) has a Failed job.
TINY = [
    "--waits", "20", "--jobs", "3", "--fast", "--job-seconds", "0.5", "1.5",
    "--failed-share", "0.1", "--limit", "60", "--settle", "1",
]  # fmt: skip


def check_exactly_once(document: dict[str, object], replicas: int) -> None:
    assert document["ok"] is True, document["failures"]
    assert document["completed_once"] == 20
    assert document["missing"] == 0 and document["duplicates"] == 0
    assert document["wrong_results"] == 0
    assert document["failed_waits"] == 2
    assert document["results"] == {"succeeded": 18, "failed": 2}
    assert document["status_changes"] == 20 * 3 * 2
    replica = document["replica"]
    assert isinstance(replica, list) and len(replica) == replicas
    assert all(r["cpu_seconds"] > 0 and r["peak_rss_mb"] > 0 for r in replica)
    assert sum(r["waits_posted"] for r in replica) == 20


def test_one_replica_on_sqlite_completes_every_wait_once(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    assert service_load.main([*TINY, "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    check_exactly_once(document, replicas=1)
    assert document["store"] == "sqlite"
    assert document["arm_requests"] > 0


def test_two_replicas_on_postgresql_share_the_waits_and_complete_each_once(
    tmp_path: Path,
) -> None:
    problem = _postgres_unavailable()
    if problem:
        pytest.skip(problem)
    out = tmp_path / "load.json"
    code = service_load.main(
        [*TINY, "--replicas", "2", "--store", POSTGRES_URL, "--json", str(out)]
    )
    assert code == 0
    document = json.loads(out.read_text())
    check_exactly_once(document, replicas=2)
    assert document["store"] == "postgresql"
    assert [r["waits_posted"] for r in document["replica"]] == [10, 10]


def test_a_run_cut_by_its_limit_fails_with_the_missing_waits_named(tmp_path: Path) -> None:
    """Jobs that end after the limit: the run ends at the limit, not later, and fails."""
    out = tmp_path / "load.json"
    args = [*TINY, "--waits", "3", "--job-seconds", "30", "30", "--limit", "3", "--settle", "0"]
    assert service_load.main([*args, "--json", str(out)]) == 1
    document = json.loads(out.read_text())
    assert document["ok"] is False
    assert document["missing"] == 3
    assert any("limit" in failure for failure in document["failures"])
    assert document["wall_seconds"] < 15


def test_python_m_bench_runs_a_real_clock_scenario_and_fails_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import cli

    small = [["bench.service_load", *TINY[:-4], "--limit", "60", "--settle", "1"]]
    cut = [["bench.service_load", *TINY[:-4], "--limit", "0.5", "--settle", "0"]]
    monkeypatch.setattr(cli, "REAL_CLOCK", {"load": small, "cut": cut})
    out = tmp_path / "bench.json"

    passed = cli.main(
        [
            "-n",
            "10",
            "--strategies",
            "baseline",
            "--no-startup",
            "--real-clock",
            "load",
            "--json",
            str(out),
            "--markdown",
            str(tmp_path / "b.md"),
        ]
    )
    [run] = json.loads(out.read_text())["real_clock"]["load"]
    failed = cli.main(
        ["-n", "10", "--strategies", "baseline", "--no-startup", "--real-clock", "cut"]
    )

    assert passed == 0 and run["passed"] is True
    assert run["numbers"]["completed_once"] == 20
    assert "| total | 20 |" in run["printed"]
    assert "Real clock, `python -m bench.service_load --waits 20" in (tmp_path / "b.md").read_text()
    assert failed == 1
