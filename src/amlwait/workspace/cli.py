"""The local workspace's commands: ``amlwait workspace serve`` and ``amlwait logs``.

``serve`` prints one line naming the endpoint and what to export, then serves until
SIGINT or SIGTERM. On exit running jobs are killed (marked Canceled) unless
``--keep-jobs``, in which case they keep running and the next ``serve`` on the same
``--data`` takes them over.

``logs JOB`` prints a job's ``user_logs/std_log.txt`` from a local workspace (the
local-only ``GET WS/jobs/{name}/amlwaitLogs`` route). Azure serves no such route: for a
non-loopback endpoint, or one without the route, it says in one line to use Azure ML
Studio or ``az ml job stream`` instead. Exit codes: 0 printed, 1 no such job, 2 bad input,
not a local workspace, or the workspace unreachable or refusing.

A bad option is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import click

from amlwait.errors import EXIT_BAD_INPUT, EXIT_FAILED

if TYPE_CHECKING:
    import httpx

    from amlwait.workspace.local import LocalWorkspace

__all__ = ["logs", "workspace"]

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
DEFAULT_API_VERSION = "2025-12-01"
LOGS_ROUTE = "amlwaitLogs"
DEFAULT_WORKSPACE = "amlwait-demo/local"
"""What ``serve`` serves without ``--workspace``: the demo's resource group and workspace."""


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
    envvar=["AMLWAIT_WORKSPACE_TOKEN", "AMLWAIT_ACCESS_TOKEN"],
    default=None,
    help="Bearer token clients must send (env AMLWAIT_WORKSPACE_TOKEN or "
    "AMLWAIT_ACCESS_TOKEN; default: a new random token, printed once at start).",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Accept any bearer token (any local process could then run commands here).",
)
@click.option(
    "--workspace",
    "workspaces",
    multiple=True,
    metavar="[[SUB/]RG/]NAME",
    help=f"A workspace to serve (repeatable; a part left out matches any). Others answer "
    f"ARM's 404. Default: {DEFAULT_WORKSPACE}.",
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
    insecure_no_auth: bool,
    workspaces: tuple[str, ...],
    max_concurrent: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    keep_jobs: bool,
) -> None:
    """Serve the ARM jobs API and run command jobs as local processes.

    \b
    Clients must send 'Authorization: Bearer TOKEN': the --token value, or a random token
    generated at start and printed once as AMLWAIT_ACCESS_TOKEN=... (export it for amlwait);
    --insecure-no-auth accepts any token. Requests whose Host header is not a loopback name
    or the --host address are refused (DNS rebinding), and so are PUT/POST bodies that
    are not JSON.
    """
    if (tls_cert is None) != (tls_key is None):
        raise _OneLineError("--tls-cert and --tls-key go together: give both or neither.")
    if insecure_no_auth and token:
        raise _OneLineError("--insecure-no-auth and --token contradict each other: give one.")
    from amlwait.workspace.server import check_exposure

    try:  # beyond loopback only with a token the user chose (and so can hand out)
        check_exposure(host, token or None)
    except ValueError as exc:
        raise _OneLineError(f"cannot start the local workspace: {exc}") from None
    generated = not token and not insecure_no_auth
    if generated:
        import secrets

        token = secrets.token_urlsafe(32)
    ws, described = _start_workspace(
        host,
        port,
        data_dir,
        token,
        insecure_no_auth=insecure_no_auth,
        workspaces=workspaces,
        max_concurrent=max_concurrent,
        tls=(tls_cert, tls_key),
    )
    if insecure_no_auth:
        token_value = "local  # --insecure-no-auth: any bearer token works"
    elif generated:
        token_value = str(token)
    else:
        token_value = "<the --token value>"
    click.echo(
        f"amlwait workspace serving {described} at {ws.endpoint}; export "
        f"AMLWAIT_ARM_ENDPOINT={ws.endpoint} AMLWAIT_ACCESS_TOKEN={token_value}",
    )
    _serve_until_signalled(ws, keep_jobs=keep_jobs)


def _start_workspace(
    host: str,
    port: int,
    data_dir: Path,
    token: str | None,
    *,
    insecure_no_auth: bool,
    workspaces: tuple[str, ...],
    max_concurrent: int,
    tls: tuple[Path | None, Path | None],
) -> tuple[LocalWorkspace, str]:
    """The started local workspace and a description of what it serves; one line if not."""
    from amlwait.errors import InputError
    from amlwait.redact import check_token
    from amlwait.workspace.local import LocalWorkspace
    from amlwait.workspace.workspaces import KnownWorkspaces

    try:
        if token:
            check_token(token, source="--token (or AMLWAIT_WORKSPACE_TOKEN)")
        served = KnownWorkspaces(workspaces or (DEFAULT_WORKSPACE,))
        assert served.specs is not None
        ws = LocalWorkspace(
            data_dir,
            host=host,
            port=port,
            token=None if insecure_no_auth else token,
            max_concurrent=max_concurrent,
            tls_cert=tls[0],
            tls_key=tls[1],
            workspaces=served.specs,
        )
        ws.start()
    except InputError as exc:
        raise _OneLineError(str(exc)) from None
    except (ValueError, OSError, RuntimeError) as exc:
        raise _OneLineError(f"cannot start the local workspace: {exc}") from None
    return ws, served.describe()


def _serve_until_signalled(ws: LocalWorkspace, *, keep_jobs: bool) -> None:
    """Serve until SIGINT or SIGTERM; then stop, killing running jobs unless ``keep_jobs``."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {
        sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ws.stop(kill_jobs=not keep_jobs)


@click.command("logs", cls=_OneLineCommand)
@click.argument("job_name", metavar="JOB")
@click.option(
    "--subscription",
    envvar="AZURE_SUBSCRIPTION_ID",
    metavar="ID",
    help="Subscription id (env AZURE_SUBSCRIPTION_ID).",
)
@click.option(
    "--resource-group",
    "-g",
    envvar="AZURE_RESOURCE_GROUP",
    metavar="NAME",
    help="Resource group (env AZURE_RESOURCE_GROUP).",
)
@click.option(
    "--workspace-name",
    "-w",
    envvar="AZUREML_WORKSPACE_NAME",
    metavar="NAME",
    help="Workspace (env AZUREML_WORKSPACE_NAME).",
)
@click.option(
    "--arm-endpoint",
    envvar="AMLWAIT_ARM_ENDPOINT",
    metavar="URL",
    default=DEFAULT_ARM_ENDPOINT,
    show_default=True,
    help="The local workspace's URL (env AMLWAIT_ARM_ENDPOINT).",
)
@click.option("--api-version", default=DEFAULT_API_VERSION, show_default=True, metavar="V")
@click.pass_context
def logs(
    ctx: click.Context,
    job_name: str,
    subscription: str | None,
    resource_group: str | None,
    workspace_name: str | None,
    arm_endpoint: str,
    api_version: str,
) -> None:
    """Print the log (stdout and stderr) of JOB on the local workspace.

    \b
    Local workspace only: for a job on Azure use Azure ML Studio or
    'az ml job stream --name JOB'. Exit codes: 0 printed · 1 no such job · 2 bad input,
    not a local workspace, or the workspace unreachable.
    """
    _check_logs_input(job_name, subscription, resource_group, workspace_name)
    endpoint = arm_endpoint.rstrip("/")
    sub, rg, ws = (quote(str(p), safe="") for p in (subscription, resource_group, workspace_name))
    job_url = (
        f"{endpoint}/subscriptions/{sub}/resourceGroups/{rg}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{ws}/jobs/{job_name}"
    )
    text = _fetch_log(ctx, endpoint, job_url, job_name, str(workspace_name), api_version)
    click.echo(text, nl=False)


def _check_logs_input(
    job_name: str, subscription: str | None, resource_group: str | None, workspace: str | None
) -> None:
    """One line for a missing connection flag or an invalid job name."""
    from amlwait.core.jobs import is_valid_job_name

    missing = [
        f"{flag} (or {env})"
        for value, flag, env in (
            (subscription, "--subscription", "AZURE_SUBSCRIPTION_ID"),
            (resource_group, "--resource-group", "AZURE_RESOURCE_GROUP"),
            (workspace, "--workspace-name", "AZUREML_WORKSPACE_NAME"),
        )
        if not value
    ]
    if missing:
        raise _OneLineError(f"missing {', '.join(missing)}")
    if not is_valid_job_name(job_name):
        raise _OneLineError(
            f"'{job_name}' is not a valid job name: use 1 to 255 letters, digits, '-' or '_'"
        )


def _fetch_log(
    ctx: click.Context,
    endpoint: str,
    job_url: str,
    job_name: str,
    workspace: str,
    api_version: str,
) -> str:
    """The job's log text from the local workspace; exits with one line otherwise."""
    import asyncio

    import httpx

    from amlwait.azureml.credentials import default_token_provider, is_loopback
    from amlwait.errors import AmlwaitError

    if not is_loopback(endpoint):
        _stop(ctx, EXIT_BAD_INPUT, _not_local(endpoint, job_name))
    try:
        token = asyncio.run(default_token_provider(endpoint).token())
    except AmlwaitError as exc:
        raise _OneLineError(str(exc)) from None
    try:
        with httpx.Client(
            headers={"Authorization": f"Bearer {token}"},
            params={"api-version": api_version},
            timeout=30.0,
        ) as client:
            job = client.get(job_url)
            if job.status_code == 404:
                _stop(
                    ctx,
                    EXIT_FAILED,
                    f"amlwait: error: job '{job_name}' was not found in workspace "
                    f"'{workspace}' at {endpoint}",
                )
            _require_ok(ctx, job, endpoint)
            log = client.get(f"{job_url}/{LOGS_ROUTE}")
            if log.status_code in (404, 405):
                _stop(ctx, EXIT_BAD_INPUT, _not_local(endpoint, job_name))
            _require_ok(ctx, log, endpoint)
    except httpx.HTTPError as exc:
        _stop(
            ctx,
            EXIT_BAD_INPUT,
            f"amlwait: error: cannot reach the workspace at {endpoint} "
            f"({type(exc).__name__}: {exc}); is 'amlwait workspace serve' running?",
        )
    return log.text


def _not_local(endpoint: str, job_name: str) -> str:
    return (
        f"amlwait: error: {endpoint} is not a local workspace, and only the local workspace "
        f"serves logs; for a job on Azure use Azure ML Studio or "
        f"'az ml job stream --name {job_name}'"
    )


def _require_ok(ctx: click.Context, response: httpx.Response, endpoint: str) -> None:
    if response.status_code == 200:
        return
    try:
        error = response.json().get("error", {})
        detail = f"{error.get('code', '')}: {error.get('message', '')}"
    except (ValueError, AttributeError):
        detail = " ".join(response.text.split())[:300] or response.reason_phrase
    _stop(
        ctx,
        EXIT_BAD_INPUT,
        f"amlwait: error: the workspace at {endpoint} answered {response.status_code} "
        f"to GET {response.request.url.path} ({detail})",
    )


def _stop(ctx: click.Context, code: int, message: str) -> NoReturn:
    click.echo(message, err=True)
    ctx.exit(code)
