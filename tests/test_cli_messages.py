"""What the command line says when it is used wrongly: one prefix, a short usage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import amlwait


def test_bare_amlwait_lists_the_commands_briefly_and_exits_2() -> None:
    done = amlwait()
    lines = done.stderr.splitlines()

    assert done.returncode == 2
    assert lines[0] == "usage: amlwait [OPTIONS] COMMAND [ARGS]..."
    assert {line.split()[0] for line in lines if line.startswith("  ")} >= {
        "wait",
        "submit",
        "render",
        "serve",
        "workspace",
        "demo",
        "cancel",
        "logs",
        "matrix",
    }
    assert "error" not in done.stderr and "Options:" not in done.stderr
    assert len(lines) < 20 and done.stdout == ""


def test_a_bare_group_lists_its_commands() -> None:
    done = amlwait("workspace")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "usage: amlwait workspace [OPTIONS] COMMAND [ARGS]..."
    assert any(line.split()[0] == "serve" for line in done.stderr.splitlines()[1:] if line)


@pytest.mark.parametrize(
    "args",
    [
        ["wait"],  # a usage error of a subcommand
        ["wait", "missing.json"],  # an amlwait error
        ["nosuch"],  # no such command
        ["render", "nonsense", "--service-connection", "c"],
        ["wait", "x.json", "--timeout", "soon"],
        ["workspace", "serve", "--port", "x"],
    ],
)
def test_every_error_starts_with_the_same_prefix(args: list[str], tmp_path: Path) -> None:
    done = amlwait(*args)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("amlwait: error: "), line


def test_the_service_entry_point_uses_the_same_prefix() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "amlwait.service", "--port", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("amlwait: error: ") and "amlwait serve --help" in line
