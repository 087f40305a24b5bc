"""The README's first command: the pipeline's two stages offline, on a real local workspace."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amlwait", "demo", "--output", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )


def test_the_demo_submits_trains_waits_and_reports_the_failure_asked_for(tmp_path: Path) -> None:
    result = demo(tmp_path, "--fail", "PLANT002/CIRCUIT01")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "== training stage: amlwait submit" in result.stdout
    assert "6 circuits: 6 submitted" in result.stdout
    assert "PLANT002_CIRCUIT01_" in result.stdout and "-> Failed" in result.stdout
    assert "failed: 6 jobs — 5 succeeded, 1 failed" in result.stdout
    assert "error: sensor table plant002_c01_missing does not exist" in result.stdout
    out = tmp_path / "out"
    manifest = json.loads((out / "training_jobs.json").read_text())
    assert len(manifest["jobs"]) == 6 and manifest["tag"].startswith("amlwait-batch-")
    document = json.loads((out / "result.json").read_text())
    failed = [job["name"] for job in document["jobs"] if job["outcome"] == "failed"]
    assert len(failed) == 1 and failed[0].startswith("PLANT002_CIRCUIT01_")
    for report in ("junit.xml", "summary.md", "report.html"):
        assert (out / report).stat().st_size > 0


def test_the_demo_says_why_the_job_failed_and_how_long_it_ran_on_every_surface(
    tmp_path: Path,
) -> None:
    """The reason comes from the local workspace's run history (the failing command's last
    stderr line), not from the log the demo prints afterwards."""
    result = demo(tmp_path, "--fail", "PLANT002/CIRCUIT01")
    assert result.returncode == 1, result.stdout + result.stderr
    why = "error: sensor table plant002_c01_missing does not exist"
    lines = result.stdout.splitlines()
    finished = [
        line
        for line in lines
        if line.startswith("PLANT002_CIRCUIT01_") and " failed after " in line
    ]
    assert len(finished) == 1, finished
    assert finished[0].endswith(why) and ": UserError: " in finished[0], finished[0]
    table_row = re.compile(r"^PLANT002_CIRCUIT01_\S+\s+Failed\s+failed\s")
    row = next(i for i, line in enumerate(lines) if table_row.match(line))
    assert "~" not in lines[row], "its run time is Azure ML's (run history), not amlwait's"
    assert lines[row + 1].startswith("    UserError: ") and lines[row + 1].endswith(why)
    out = tmp_path / "out"
    document = json.loads((out / "result.json").read_text())
    bad = next(job for job in document["jobs"] if job["outcome"] == "failed")
    assert bad["error_code"] == "UserError" and bad["reason"].endswith(why)
    assert bad["times_from"] == "service" and 0 < bad["run_seconds"] < 60
    assert all(job["times_from"] == "service" for job in document["jobs"])
    assert f"{why}</failure>" not in (out / "junit.xml").read_text()  # the text ends with Studio
    assert why in (out / "junit.xml").read_text().split('message="')[1].split('"')[0]
    assert why.replace("_", "\\_") in (out / "summary.md").read_text()
    assert f"{why}</title>" in (out / "report.html").read_text()


def test_the_demo_succeeds_when_nothing_fails(tmp_path: Path) -> None:
    result = demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded: 6 jobs — 6 succeeded" in result.stdout


def test_an_unknown_circuit_to_fail_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = demo(tmp_path, "--fail", "PLANT009/CIRCUIT01")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no such circuit in the demo" in result.stderr
