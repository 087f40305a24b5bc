"""The README's first command: the main job offline, on a real local workspace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_demo_runs_real_jobs_and_reports_the_failure_it_was_asked_for(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "amlwait",
            "demo",
            "--jobs",
            "3",
            "--fail",
            "1",
            "--json",
            str(tmp_path / "result.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "submitted 3 jobs tagged amlwait-demo-" in result.stdout
    assert "Running -> Failed" in result.stdout
    assert "failed: 3 jobs — 2 succeeded, 1 failed" in result.stdout
    document = json.loads((tmp_path / "result.json").read_text())
    assert sorted(job["outcome"] for job in document["jobs"]) == [
        "failed",
        "succeeded",
        "succeeded",
    ]
    assert all(job["status"] in ("Completed", "Failed") for job in document["jobs"])


def test_the_demo_succeeds_when_nothing_fails() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "amlwait", "demo", "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "succeeded: 2 jobs — 2 succeeded" in result.stdout
