"""The package's public face and its import graph: what ``import amlwait`` offers, and
which modules a report or an adapter's command pulls in."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import amlwait


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )


def test_the_version_is_the_installed_distributions() -> None:
    assert amlwait.__version__ == version("amlwait")


def test_every_public_name_resolves_and_deadline_is_not_one() -> None:
    assert "Deadline" not in amlwait.__all__
    for name in amlwait.__all__:
        assert getattr(amlwait, name) is not None, name


def test_the_events_a_listener_hears_and_the_testing_fakes_are_public() -> None:
    from amlwait import events, testing

    assert amlwait.testing is testing
    for name in ("WaitStarted", "StatusChanged", "JobFinished", "JobMissing", "JobRetried",
                 "Warning_", "Tick", "CancelSent"):  # fmt: skip
        assert name in amlwait.__all__
        assert getattr(amlwait, name) is getattr(events, name)
        assert getattr(events, name) in events.WaitEvent.__args__


def test_the_reports_do_not_import_the_engine() -> None:
    result = python(
        "import sys, amlwait.devops.junit, amlwait.devops.summary, amlwait.devops.html, "
        "amlwait.devops.reporter, amlwait.console; print('amlwait.waiter' in sys.modules)"
    )
    assert result.stdout.strip() == "False", result.stderr


def test_an_adapters_command_module_imports_first_without_a_cycle() -> None:
    for module in ("amlwait.service.cli", "amlwait.submit.cli"):
        result = python(f"import {module}, amlwait.cli; print(sorted(amlwait.cli.cli.commands))")
        assert result.returncode == 0, result.stderr
    result = python(
        "import amlwait.service.cli, click; from amlwait.cli import cli; "
        "print(cli.get_command(click.Context(cli), 'serve') is amlwait.service.cli.serve)"
    )
    assert result.stdout.strip() == "True", result.stderr


_COMMAND_LAYER = ("cli", "submit.command", "submit.cli", "service.cli", "workspace.cli")
_FORBIDDEN_BELOW = {
    # room: the rooms it must never import (imports point down only; README "Architecture")
    "core": {"azureml", "workspace", "waiter", "devops", "submit", "service", "cli", "events",
             "result", "console"},
    "events": {"azureml", "workspace", "waiter", "devops", "submit", "service", "cli"},
    "result": {"azureml", "workspace", "waiter", "devops", "submit", "service", "cli"},
    "pipeline_result": {"azureml", "workspace", "waiter", "devops", "submit", "service", "cli"},
    "pipeline_wait": {"azureml", "workspace", "waiter", "devops", "submit", "service", "cli"},
    "waiter": {"devops", "submit", "service", "cli", "workspace"},
    "readpath": {"devops", "submit", "service", "cli", "workspace"},
    "azureml": {"waiter", "devops", "submit", "service", "cli", "workspace"},
    "workspace": {"waiter", "devops", "submit", "service", "cli"},
    "devops": {"waiter", "submit", "service", "cli"},
    "submit": {"service", "cli"},
    "service": {"cli", "submit"},
}


def test_imports_point_down_only() -> None:
    import ast
    from pathlib import Path

    import amlwait

    root = Path(amlwait.__file__).parent
    offences = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        if module.startswith(_COMMAND_LAYER):
            continue  # the command layer sits on top and may import any room
        room = module.split(".")[0]
        forbidden = _FORBIDDEN_BELOW.get(room, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                parts = name.split(".")
                if parts[0] == "amlwait" and len(parts) > 1 and parts[1] in forbidden:
                    offences.append(f"{module} imports {name}")
    assert offences == []
