"""``amlwait demo --as-pipeline``: the whole pipeline route offline — one pipeline job for
the six example circuits, one failing on purpose, then the wait and per-circuit reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.test_demo import demo


def test_the_pipeline_demo_shows_one_job_six_steps_and_the_failure(tmp_path: Path) -> None:
    result = demo(tmp_path, "--as-pipeline", "--fail", "PLANT002/CIRCUIT01")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "== training stage: amlwait submit --as-pipeline" in result.stdout
    assert "with 6 steps submitted" in result.stdout
    assert "-> Failed" in result.stdout  # the pipeline job itself
    assert "failed: 6 jobs — 5 succeeded, 1 failed" in result.stdout
    assert "error: sensor table plant002_c01_missing does not exist" in result.stdout
    out = tmp_path / "out"
    manifest = json.loads((out / "training_jobs.json").read_text())
    assert len(manifest["jobs"]) == 1 and manifest["jobs"] == [manifest["pipeline"]]
    assert len(manifest["steps"]) == 6
    document = json.loads((out / "result.json").read_text())
    assert document["outcome"] == "failed"
    outcomes = [job["outcome"] for job in document["jobs"]]
    assert sorted(outcomes) == ["failed"] + ["succeeded"] * 5
    (failed,) = [job for job in document["jobs"] if job["outcome"] == "failed"]
    assert failed["name"].startswith("PLANT002_CIRCUIT01_")
    assert "sensor table plant002_c01_missing does not exist" in failed["reason"]
    cases = list(ET.parse(out / "junit.xml").getroot().iter("testcase"))
    assert len(cases) == 6
    assert [c.get("name") for c in cases if c.find("failure") is not None] == [failed["name"]]
