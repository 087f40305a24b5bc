from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from amlwait.errors import InputError
from amlwait.submit.command import build_batch
from tests.helpers import WS
from tests.submit.helpers import CIRCUITS_YAML, make_project, write

DAY = date(2025, 11, 1)


def test_names_tags_and_the_batch_tag(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    batch = build_batch(project.circuits, project.job, workspace=WS, run_date=DAY)
    assert [job.base_name for job in batch.jobs] == [
        "PLANT001_CIRCUIT01_2025_11_01",
        "PLANT001_CIRCUIT02_2025_11_01",
        "PLANT002_CIRCUIT01_2025_11_01",
    ]
    assert batch.tag.startswith("amlwait-batch-")
    tags = batch.jobs[1].properties["tags"]
    assert tags == {
        "owner": "data-team",
        "plant": "PLANT001",
        "circuit": "CIRCUIT02",
        "date": "2025-11-01",
        batch.tag: "3",
    }
    assert "sys.exit(1)" in batch.jobs[1].command
    again = build_batch(project.circuits, project.job, workspace=WS, run_date=DAY)
    assert again.tag == batch.tag
    other_day = build_batch(project.circuits, project.job, workspace=WS, run_date=date(2025, 11, 2))
    assert other_day.tag != batch.tag
    only = build_batch(project.circuits, project.job, workspace=WS, run_date=DAY, only=["PLANT002"])
    assert [job.key for job in only.jobs] == ["PLANT002/CIRCUIT01"]


def test_two_circuits_with_one_name_are_refused_naming_both_lines(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        circuits="plants:\n  P1:\n    circuits: [C1]\n  p1:\n    circuits: [c1]\n",
        job="command: run\nenvironment: azureml:e:1\n",
    )
    with pytest.raises(InputError) as caught:
        build_batch(project.circuits, project.job, workspace=WS, run_date=DAY)
    assert str(caught.value) == (
        f"{project.circuits}:5: p1/c1 and P1/C1 (line 3) both get the job name P1_C1_2025_11_01; "
        "rename one or change --name-pattern"
    )


def test_a_pattern_without_the_circuit_collides(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with pytest.raises(InputError, match="both get the job name PLANT001_2025_11_01"):
        build_batch(
            project.circuits,
            project.job,
            workspace=WS,
            run_date=DAY,
            name_pattern="{plant}_{date:%Y_%m_%d}",
        )


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{plant}-{circuit}", "not a valid job name"),
        ("{date}_{plant}", "not a valid job name"),
        ("{plant}_{circuit}_" + "X" * 90, "leave room for re-run suffixes"),
        ("{plant}_{line}", "{line} is not a known placeholder for PLANT001/CIRCUIT01"),
    ],
)
def test_bad_name_patterns_are_refused(tmp_path: Path, pattern: str, message: str) -> None:
    project = make_project(tmp_path)
    with pytest.raises(InputError, match=message.replace("{", r"\{").replace("}", r"\}")):
        build_batch(project.circuits, project.job, workspace=WS, run_date=DAY, name_pattern=pattern)


def test_a_conversion_error_names_the_template_line(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    write(
        project.job,
        "command: run {plant}\nenvironment:\n  image: python:3.11\n",
    )
    with pytest.raises(InputError) as caught:
        build_batch(project.circuits, project.job, workspace=WS, run_date=DAY)
    assert str(caught.value).startswith(f"{project.job}:2: environment: an inline environment")
    assert CIRCUITS_YAML  # the default circuits were used
