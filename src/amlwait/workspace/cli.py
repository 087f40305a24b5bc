"""``amlwait workspace serve``: run a local Azure-ML-compatible workspace until stopped.

Prints one line naming the endpoint and what to export, then serves until SIGINT or
SIGTERM. On exit running jobs are killed (marked Canceled) unless ``--keep-jobs``, in
which case they keep running and the next ``serve`` on the same ``--data`` takes them
over. A bad option is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

EXIT_BAD_INPUT = 2


class _OneLineError(click.ClickException):
    exit_code = EXIT_BAD_INPUT


class _OneLineCommand(click.Command):
    """Reports a bad option as one ``Error: ...`` line instead of usage text."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _OneLineError(exc.format_message()) from None


@click.group("workspace")
def workspace() -> None:
    """A local Azure-ML-compatible workspace (ARM jobs API on this machine)."""


@workspace.command("serve", cls=_OneLineCommand)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: any."
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".amlwait-workspace"),
    show_default=True,
    help="Where jobs, their runs and logs are kept.",
)
@click.option(
    "--token",
    envvar="AMLWAIT_WORKSPACE_TOKEN",
    default=None,
    help="Bearer token clients must send (default: any token is accepted).",
)
@click.option("--max-concurrent", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--keep-jobs", is_flag=True, help="Leave running jobs running on exit.")
def serve(
    host: str,
    port: int,
    data_dir: Path,
    token: str | None,
    max_concurrent: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    keep_jobs: bool,
) -> None:
    """Serve the ARM jobs API and run command jobs as local processes."""
    if (tls_cert is None) != (tls_key is None):
        raise _OneLineError("--tls-cert and --tls-key go together: give both or neither.")
    from amlwait.workspace.local import LocalWorkspace

    try:
        ws = LocalWorkspace(
            data_dir,
            host=host,
            port=port,
            token=token or None,
            max_concurrent=max_concurrent,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
        ws.start()
    except (ValueError, OSError, RuntimeError) as exc:
        raise _OneLineError(f"cannot start the local workspace: {exc}") from None

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {
        sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    token_value = "<the --token value>" if token else "local (any bearer token works)"
    click.echo(
        f"amlwait workspace serving at {ws.endpoint}; "
        f"export AMLWAIT_ARM_ENDPOINT={ws.endpoint} AMLWAIT_ACCESS_TOKEN={token_value}"
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ws.stop(kill_jobs=not keep_jobs)
