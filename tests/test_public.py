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
