"""The ``amlwait`` command line: wait · cancel · workspace · demo.

Exit codes (other tools rely on them): 0 every job Completed; 1 a job ended badly;
2 bad input, bad configuration or authentication refused; 3 deadline reached with jobs
unfinished; 130 interrupted. Errors are one line on stderr; ``--debug`` adds tracebacks.

Heavy imports (pydantic, httpx, Rich, azure-identity) happen inside the commands, so
``amlwait --help`` starts fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, ClassVar

import click

from amlwait import __version__
from amlwait.cli.options import DURATION, connection_options
from amlwait.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_SUCCEEDED,
    EXIT_TIMED_OUT,
    AmlwaitError,
)


class _CommandLine(click.Group):
    """The ``amlwait`` group. The commands of the adapter packages are imported when
    first looked up: they import this package's option types, so attaching them at import
    time would make importing either side first a cycle."""

    ELSEWHERE: ClassVar[dict[str, tuple[str, str]]] = {
        "logs": ("amlwait.workspace.cli", "logs"),
        "matrix": ("amlwait.devops.cli", "matrix"),
        "render": ("amlwait.devops.cli", "render"),
        "report": ("amlwait.cli.report", "report"),
        "serve": ("amlwait.service.cli", "serve"),
        "submit": ("amlwait.submit.cli", "submit"),
        "workspace": ("amlwait.workspace.cli", "workspace"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.ELSEWHERE})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.ELSEWHERE:
            module, attribute = self.ELSEWHERE[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_CommandLine,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="amlwait")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Wait for any number of Azure ML jobs — fast, frugal, dependable."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("manifest", metavar="MANIFEST")
@connection_options
@click.option(
    "--timeout",
    type=DURATION,
    default="48h",
    show_default=True,
    help="Overall wall-clock deadline; 0 reads every job once.",
)
@click.option(
    "--poll-interval",
    type=DURATION,
    default="15s",
    show_default=True,
    help="Fastest re-read of one job.",
)
@click.option(
    "--max-poll-interval",
    type=DURATION,
    default="2m",
    show_default=True,
    help="Slowest re-read of one job.",
)
@click.option(
    "--not-found-grace",
    type=DURATION,
    default="5m",
    show_default=True,
    help="How long a listed job may be missing before it fails.",
)
@click.option(
    "--not-responding-grace",
    type=DURATION,
    default="15m",
    show_default=True,
    help="How long NotResponding or Paused may last before the job fails.",
)
@click.option("--fail-fast", is_flag=True, help="Stop at the first job that ends badly.")
@click.option(
    "--cancel-remaining",
    is_flag=True,
    help="With --fail-fast or on timeout: cancel the jobs still running.",
)
@click.option(
    "--cancel-on-interrupt",
    is_flag=True,
    help="On SIGINT/SIGTERM, cancel the unfinished jobs before exiting.",
)
@click.option("--json", "json_path", metavar="FILE", help="Write the result as JSON.")
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=0,
    show_default=True,
    help="Resubmit a job that ends Failed (never Canceled) up to N times as NAME_r2, _r3…",
)
@click.option(
    "--update-manifest",
    "update_manifest",
    metavar="FILE",
    help="With --retries: rewrite this manifest (atomically) to name the newest attempts.",
)
@click.option(
    "--junit",
    "junit_path",
    metavar="FILE",
    help="Write JUnit XML (one test case per job) for PublishTestResults@2.",
)
@click.option(
    "--summary",
    "summary_path",
    metavar="FILE",
    help="Write a Markdown summary (uploaded to the run's summary tab in a pipeline).",
)
@click.option(
    "--html",
    "html_path",
    metavar="FILE",
    help="Write a self-contained HTML report with a timeline of every job.",
)
@click.option(
    "--azure-devops/--no-azure-devops",
    "azure_devops",
    default=None,
    help="Speak Azure Pipelines logging commands (default: when TF_BUILD=True).",
)
@click.option(
    "--max-requests-per-second",
    type=float,
    default=10.0,
    show_default=True,
    help="Request budget (ARM allows 25 reads/s per subscription and principal).",
)
@click.option(
    "--read-path",
    type=click.Choice(["auto", "arm", "mlflow"]),
    default="auto",
    show_default=True,
    help="How jobs are read: auto = mlflow when the workspace offers it and its first "
    "search answers, else arm with a one-line note (--timeout 0: arm); mlflow = one MLflow "
    "search per poll for what ended, each confirmed by one ARM GET, ARM as a slow safety "
    "net (progress shows ends only); arm = ARM only.",
)
def wait(manifest: str, **options: Any) -> int:
    """Wait until every job in MANIFEST (a path or -) has finished.

    \b
    Exit codes: 0 all Completed · 1 a job Failed, was Canceled, or was missing or
    NotResponding past its grace · 2 bad input or credentials · 3 deadline reached with
    jobs unfinished · 130 interrupted (jobs are not cancelled unless asked).
    """
    from amlwait.cli.wait import run_wait

    return run_wait(manifest, **options)


@cli.command()
@click.argument("manifest", metavar="MANIFEST")
@connection_options
def cancel(manifest: str, **options: Any) -> int:
    """Cancel every unfinished job of the batch in MANIFEST and say what was cancelled."""
    from amlwait.cli.cancel import run_cancel

    return run_cancel(manifest, **options)


@cli.command()
@click.option(
    "--fail",
    multiple=True,
    metavar="PLANT/CIRCUIT",
    help="Make this circuit's training fail (repeatable; a number N fails the first N).",
)
@click.option(
    "--output",
    default="amlwait-demo",
    show_default=True,
    metavar="DIR",
    help="Where the manifest and the reports go.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 5),
    default=0,
    show_default=True,
    help="Pass --retries to the wait (a failing circuit then fails again: its table is missing).",
)
@click.option(
    "--as-pipeline",
    is_flag=True,
    help="Submit the circuits as ONE pipeline job (one step each) and wait for it.",
)
def demo(fail: tuple[str, ...], output: str, retries: int, as_pipeline: bool) -> int:
    """Run the pipeline offline: a local workspace, amlwait submit of examples/, amlwait wait."""
    from amlwait.cli.demo import run_demo

    code: int = run_demo(fail=fail, output=output, retries=retries, as_pipeline=as_pipeline)
    return code


# click >= 8.2 raises this for a group called without a command (before: a UsageError).
_NO_ARGS_IS_HELP: type[click.UsageError] = getattr(
    click.exceptions, "NoArgsIsHelpError", click.exceptions.NoSuchOption
)
ERROR_PREFIX = "amlwait: error: "


def error_line(error: click.UsageError) -> str:
    """``amlwait: error: MESSAGE (see 'amlwait CMD --help')``: every command-line error
    starts with the same prefix; the command it concerns is in the hint."""
    where = error.ctx.command_path if error.ctx else "amlwait"
    return f"{ERROR_PREFIX}{error.format_message()} (see '{where} --help')"


def _say_error(line: str) -> None:
    """The error line on stderr; under ``TF_BUILD`` one the agent reads no command from
    (it scans stderr too, and a message may quote a server)."""
    from amlwait.devops.reporter import in_pipeline

    if in_pipeline():
        from amlwait.devops.vso import inert

        line = inert(line)
    click.echo(line, err=True)


def short_usage(ctx: click.Context | None) -> str:
    """What bare ``amlwait`` (or a bare group such as ``amlwait workspace``) prints: the
    usage line, one line per command, and where the options are described."""
    if ctx is None or not isinstance(ctx.command, click.Group):
        return f"{ERROR_PREFIX}a command is missing (see 'amlwait --help')"
    group = ctx.command
    names = group.list_commands(ctx)
    width = max((len(name) for name in names), default=0)
    usage = " ".join([ctx.command_path, *group.collect_usage_pieces(ctx)])
    lines = [f"usage: {usage}", "", "commands:"]
    for name in names:
        command = group.get_command(ctx, name)
        summary = command.get_short_help_str(limit=70) if command is not None else ""
        lines.append(f"  {name:<{width}}  {summary}")
    lines += ["", f"'{ctx.command_path} COMMAND --help' describes a command and its options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: map everything to one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    from amlwait.azureml.credentials import show_azure_identity_logs
    from amlwait.redact import scrub

    show_azure_identity_logs(debug)
    try:
        code = cli.main(args=args, prog_name="amlwait", standalone_mode=False)
    except click.exceptions.Exit as stop:
        code = stop.exit_code
    except _NO_ARGS_IS_HELP as error:  # a bare group: what it offers, briefly
        click.echo(short_usage(error.ctx), err=True)
        code = EXIT_BAD_INPUT
    except click.UsageError as error:
        _say_error(error_line(error))
        code = EXIT_BAD_INPUT
    except click.ClickException as error:
        _say_error(f"{ERROR_PREFIX}{error.format_message()}")
        code = EXIT_BAD_INPUT
    except click.Abort:
        click.echo("amlwait: interrupted", err=True)
        code = EXIT_INTERRUPTED
    except AmlwaitError as error:
        if debug:
            raise
        _say_error(f"{ERROR_PREFIX}{scrub(str(error))}")
        code = error.exit_code
    except KeyboardInterrupt:
        click.echo("amlwait: interrupted", err=True)
        code = EXIT_INTERRUPTED
    except Exception as error:
        if debug:
            raise
        _say_error(
            f"amlwait: internal error: {type(error).__name__}: {scrub(str(error))} "
            "(rerun with --debug for a traceback, and please report it)"
        )
        code = 70
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["EXIT_FAILED", "EXIT_SUCCEEDED", "EXIT_TIMED_OUT", "cli", "main"]
