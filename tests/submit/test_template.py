from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from amlwait.errors import InputError
from amlwait.submit.template import JobTemplate, placeholder_values, substitute
from tests.submit.helpers import write

VALUES = placeholder_values("PLANT001", "CIRCUIT01", date(2025, 11, 1), {"epochs": 7, "fast": True})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{plant}/{circuit}/{date}", "PLANT001/CIRCUIT01/2025-11-01"),
        ("{date:%Y_%m_%d}", "2025_11_01"),
        ("--epochs {epochs:03d} --fast {fast}", "--epochs 007 --fast true"),
        (
            "--data ${{inputs.data}} --out ${{outputs.model}}",
            "--data ${{inputs.data}} --out ${{outputs.model}}",
        ),
        ("${{inputs.plant}} {plant}", "${{inputs.plant}} PLANT001"),
        ("awk '{{print}}' {{plant}}", "awk '{print}' {plant}"),
        ("python -c 'd = {\"a\": 1}; s = {}'", "python -c 'd = {\"a\": 1}; s = {}'"),
    ],
)
def test_substitution_replaces_known_keys_and_leaves_azure_ml_expressions(
    text: str, expected: str
) -> None:
    assert substitute(text, VALUES, "job.yml:3: command") == expected


def test_an_unknown_placeholder_names_file_line_key_and_circuit(tmp_path: Path) -> None:
    job = write(
        tmp_path / "job.yml",
        "type: command\nenvironment: azureml:e@latest\ncommand: >-\n  python train.py\n"
        "  --table {sensor_table}\n",
    )
    template = JobTemplate.load(job)
    assert template.render(dict(VALUES, sensor_table="s1"))["command"] == (
        "python train.py --table s1"
    )
    with pytest.raises(InputError) as caught:
        template.render(VALUES, "PLANT002/CIRCUIT01")
    assert str(caught.value).startswith(f"{job}:3: command: {{sensor_table}} is not a known ")
    assert "for PLANT002/CIRCUIT01" in str(caught.value)


def test_a_format_spec_that_does_not_suit_the_value_is_an_error() -> None:
    with pytest.raises(InputError, match=r"job.yml:3: command: \{plant:03d\}: format spec"):
        substitute("{plant:03d}", VALUES, "job.yml:3: command")


def test_nested_values_and_lists_are_substituted_but_keys_are_not(tmp_path: Path) -> None:
    job = write(
        tmp_path / "job.yml",
        "command: run {plant}\nenvironment_variables:\n  PLANT_{plant}: '{circuit}'\n"
        "tags: {list: ['a-{plant}', 3]}\n",
    )
    rendered = JobTemplate.load(job).render(VALUES)
    assert rendered["environment_variables"] == {"PLANT_{plant}": "CIRCUIT01"}
    assert rendered["tags"] == {"list": ["a-PLANT001", 3]}
