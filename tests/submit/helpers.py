"""Helpers for the submit tests: files to submit, and the command run as ``amlwait`` runs it."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import WS

JOB_YAML = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
type: command
command: python3 -c "import sys; print('{plant} {circuit} {date}'); sys.exit({code})"
code: src
environment: azureml:train-env@latest
compute: azureml:cpu-cluster
inputs:
  day: "{date:%Y_%m_%d}"
experiment_name: training-{plant}
tags: {owner: data-team}
"""

CIRCUITS_YAML = """\
plants:
  PLANT001:
    params: {code: 0}
    circuits:
      CIRCUIT01: {sensor_table: s1}
      CIRCUIT02: {sensor_table: s2, code: 1}
  PLANT002:
    params: {code: 0}
    circuits: [CIRCUIT01]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@dataclass
class Project:
    """A folder with circuits.yaml, job.yml and a code folder, as a repository has."""

    root: Path

    @property
    def circuits(self) -> Path:
        return self.root / "circuits.yaml"

    @property
    def job(self) -> Path:
        return self.root / "job.yml"

    @property
    def output(self) -> Path:
        return self.root / "training_jobs.json"

    def args(self, endpoint: str, *extra: str) -> list[str]:
        return [
            "--circuits", str(self.circuits),
            "--job", str(self.job),
            "--date", "2025-11-01",
            "--subscription", WS.subscription,
            "-g", WS.resource_group,
            "-w", WS.workspace,
            "--arm-endpoint", endpoint,
            "--output", str(self.output),
            *extra,
        ]  # fmt: skip


def make_project(root: Path, circuits: str = CIRCUITS_YAML, job: str = JOB_YAML) -> Project:
    write(root / "circuits.yaml", circuits)
    write(root / "job.yml", job)
    # azure-ai-ml refuses an empty code folder (EmptyDirectoryError), and so does submit.
    write(root / "src" / "README.txt", "the circuit training code\n")
    return Project(root)


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_submit(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """``amlwait submit ARGS`` in this process, through amlwait's own error handling."""
    import amlwait.cli as main_cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main_cli.main(["submit", *args])
    captured = capsys.readouterr()
    code = stop.value.code
    return Run(code if isinstance(code, int) else 0, captured.out, captured.err)
