"""``amlwait serve``: the waiting service, one replica per process.

Replicas may share one PostgreSQL store (each claims waits with a lease); a single replica
can use SQLite. The service key (``AMLWAIT_SERVICE_KEY``) guards every route but
``/healthz`` and Event Grid (``?key=``, ``AMLWAIT_EVENTGRID_KEY`` or the service key);
``AMLWAIT_SERVICE_SECRET`` encrypts the stored DevOps tokens.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING, Any

import click

from amlwait.cli.options import DURATION

if TYPE_CHECKING:
    from amlwait.azureml.arm import ArmJobSource
    from amlwait.core.budget import RequestBudget
    from amlwait.service.watcher import Watcher, WatcherSettings

SERVICE_KEY_ENV = "AMLWAIT_SERVICE_KEY"
EVENTGRID_KEY_ENV = "AMLWAIT_EVENTGRID_KEY"
ALLOWED_ORGS_ENV = "AMLWAIT_ALLOWED_ORGS"
STORE_SECRET_ENV = "AMLWAIT_SERVICE_SECRET"
ARM_ENDPOINT_ENV = "AMLWAIT_ARM_ENDPOINT"
# How long an idle client connection stays open: longer than the idle expiry of the clients
# that call us (httpx 5 s, .NET HttpClient 60 s), so the client closes first. With uvicorn's
# default, 5 s like httpx's, the server closed connections a client was just reusing: in a
# 600-POST burst the request was lost (the client saw ReadError; nothing was stored).
KEEP_ALIVE_SECONDS = 75


def _allowed_orgs(flags: tuple[str, ...]) -> list[str]:
    from amlwait.service.models import org_url_problem

    orgs = [*flags, *os.environ.get(ALLOWED_ORGS_ENV, "").split(",")]
    orgs = [org.strip() for org in orgs if org.strip()]
    if not orgs:
        raise click.UsageError(
            f"give at least one --allow-org URL (or {ALLOWED_ORGS_ENV}), e.g. "
            "--allow-org https://dev.azure.com/myorg/"
        )
    for org in orgs:
        problem = org_url_problem(org)
        if problem is not None:
            raise click.UsageError(f"--allow-org {problem}")
    return orgs


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--store",
    "store_url",
    default="sqlite:///amlwait-service.db",
    show_default=True,
    metavar="URL",
    help="sqlite:///FILE (one replica) or postgresql://… (several).",
)
@click.option(
    "--allow-org",
    "allow_org",
    multiple=True,
    metavar="URL",
    help=f"Azure DevOps organization URL callbacks may go to; repeatable "
    f"(env {ALLOWED_ORGS_ENV}, comma-separated).",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help=f"Run without {SERVICE_KEY_ENV} (loopback only; for trials).",
)
@click.option(
    "--api-version",
    default="2025-12-01",
    show_default=True,
    metavar="V",
    help="Azure ML REST API version of the ARM requests.",
)
@click.option(
    "--max-requests-per-second",
    default=10.0,
    show_default=True,
    type=float,
    help="Requests to ARM per second at most, for all waits of this replica together.",
)
@click.option(
    "--poll-interval",
    type=DURATION,
    default="15s",
    show_default=True,
    help="How often a wait reads its jobs at first.",
)
@click.option(
    "--max-poll-interval",
    type=DURATION,
    default="2m",
    show_default=True,
    help="The slowest a wait's polling backs off to while nothing changes.",
)
@click.option(
    "--not-found-grace",
    type=DURATION,
    default="5m",
    show_default=True,
    help="How long a batch may have fewer than expectedJobs jobs (or a job be missing).",
)
@click.option(
    "--not-responding-grace",
    type=DURATION,
    default="15m",
    show_default=True,
    help="How long a job may stay NotResponding/Paused/Unknown before it counts as failed.",
)
@click.option(
    "--event-poll-interval",
    type=DURATION,
    default="5m",
    show_default=True,
    help="Once Event Grid events arrive for a wait's jobs, read its batch this often "
    "(a safety net: events can be late or missing) and a job when its event says it ended.",
)
@click.option(
    "--lease",
    type=DURATION,
    default="60s",
    show_default=True,
    help="How long a dead replica's waits stay untouched before another resumes them.",
)
@click.option(
    "--progress-interval",
    type=DURATION,
    default="10s",
    show_default=True,
    help="How often progress lines go to the task's live feed (and states to the store).",
)
@click.option(
    "--retry-initial",
    type=DURATION,
    default="2s",
    show_default=True,
    help="First delay before a failed callback is sent again (doubling, max 5m).",
)
@click.option(
    "--callback-timeout",
    type=DURATION,
    default="20s",
    show_default=True,
    help="Timeout of one request to Azure DevOps.",
)
def serve(**options: Any) -> None:
    """Serve waits for InvokeRESTAPI@1 (waitForCompletion: true) and call back."""
    from amlwait.errors import InputError
    from amlwait.redact import check_token, is_loopback_host
    from amlwait.service.secrets import generate_secret

    allowed = _allowed_orgs(options["allow_org"])
    host = str(options["host"])
    key = os.environ.get(SERVICE_KEY_ENV) or None
    try:
        for name in (SERVICE_KEY_ENV, STORE_SECRET_ENV, EVENTGRID_KEY_ENV):
            if os.environ.get(name):
                check_token(os.environ[name], source=name)
    except InputError as error:
        raise click.UsageError(str(error)) from None
    if options["insecure_no_auth"]:
        if not is_loopback_host(host):
            raise click.UsageError("--insecure-no-auth only listens on a loopback address")
        key = None
        if not os.environ.get(STORE_SECRET_ENV):
            # For trials: tokens are still encrypted at rest, under a key that lives only as
            # long as this process (a store written now cannot be reopened after a restart).
            os.environ[STORE_SECRET_ENV] = generate_secret()
            click.echo(
                f"amlwait serve: {STORE_SECRET_ENV} is not set: this trial run encrypts "
                "AuthTokens with a random key of its own; its store cannot be reopened later",
                err=True,
            )
    elif key is None:
        raise click.UsageError(
            f"set {SERVICE_KEY_ENV} (the secret InvokeRESTAPI@1 sends as X-Amlwait-Key), "
            "or --insecure-no-auth on loopback"
        )
    elif len(key) < 16:
        raise click.UsageError(f"{SERVICE_KEY_ENV} is too short; use at least 16 characters")
    import asyncio

    asyncio.run(_serve(options, allowed, key))


async def _serve(options: dict[str, Any], allowed: list[str], key: str | None) -> None:
    """Run the service until the server stops: store, ARM source, watcher and app."""
    from amlwait.errors import AmlwaitError
    from amlwait.service.app import create_app
    from amlwait.service.devops_client import DevOpsClient
    from amlwait.service.store import open_store
    from amlwait.service.watcher import Watcher

    settings, budget = _watcher_settings(options)
    try:
        store = open_store(options["store_url"], secret_key=os.environ.get(STORE_SECRET_ENV))
        source = _arm_source(options, budget)
    except AmlwaitError as error:
        raise click.ClickException(str(error)) from None
    devops = DevOpsClient(allowed, timeout=float(options["callback_timeout"]))
    watcher = Watcher(store, source, devops, settings=settings)
    app = create_app(
        store,
        allowed_orgs=allowed,
        service_key=key,
        eventgrid_key=os.environ.get(EVENTGRID_KEY_ENV) or None,
        watcher=watcher,
    )
    sock = _bind(str(options["host"]), int(options["port"]))
    try:
        await _listen(app, watcher, sock)
    finally:
        await source.aclose()
        await devops.aclose()
        store.close()
        sock.close()


def _watcher_settings(options: dict[str, Any]) -> tuple[WatcherSettings, RequestBudget]:
    """The watcher's settings and the ARM request budget from the flags; one line if bad."""
    from amlwait.cli.options import polling_from_flags
    from amlwait.core.retry import RetryPolicy
    from amlwait.service.watcher import WatcherSettings

    try:
        policy, budget = polling_from_flags(options)
        if options["event_poll_interval"] <= 0:
            raise ValueError("the event poll interval must be positive")
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    lease = float(options["lease"])
    retry_initial = float(options["retry_initial"])
    settings = WatcherSettings(
        policy=policy,
        lease_seconds=lease,
        claim_interval=min(5.0, lease / 3),
        progress_interval=float(options["progress_interval"]),
        event_poll_interval=float(options["event_poll_interval"]),
        outbox_lease_seconds=max(lease, 3 * float(options["callback_timeout"]) + 5),
        outbox_interval=min(1.0, retry_initial),
        outbox_retry=RetryPolicy(
            initial=retry_initial, maximum=300.0, jitter=min(1.0, retry_initial / 4)
        ),
    )
    return settings, budget


def _arm_source(options: dict[str, Any], budget: RequestBudget) -> ArmJobSource:
    """The service's one ARM source; its token is registered with the redactor, and a
    loopback endpoint is never reached through a proxy (``ArmJobSource`` sees to that)."""
    from amlwait.azureml.arm import DEFAULT_ENDPOINT, ArmJobSource
    from amlwait.azureml.credentials import default_token_provider
    from amlwait.service.secrets import RegisteredToken

    endpoint = os.environ.get(ARM_ENDPOINT_ENV) or DEFAULT_ENDPOINT
    return ArmJobSource(
        endpoint=endpoint,
        api_version=options["api_version"],
        budget=budget,
        credential=RegisteredToken(default_token_provider(endpoint)),
    )


async def _listen(app: Any, watcher: Watcher, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` with the watcher running beside it; stop both together."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    server = uvicorn.Server(config)
    watching = asyncio_task(watcher.run())
    print(f"amlwait service listening on http://{shown}:{port}", flush=True)
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.stop()
        await watching


def asyncio_task(work: Any) -> Any:
    import asyncio

    return asyncio.ensure_future(work)


def _bind(host: str, port: int) -> socket.socket:
    bare = host.strip("[]")
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: an answer is not held back by Nagle's algorithm
        # waiting for the delayed ACK of a POST (40 ms per Event Grid delivery on Linux).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> None:
    """``python -m amlwait.service [OPTIONS]``: ``amlwait serve`` without the main CLI."""
    try:
        serve.main(args=argv, prog_name="amlwait serve", standalone_mode=False)
    except click.exceptions.Exit as stop:
        sys.exit(stop.exit_code)
    except click.UsageError as error:
        click.echo(
            f"amlwait: error: {error.format_message()} (see 'amlwait serve --help')", err=True
        )
        sys.exit(2)
    except click.ClickException as error:
        click.echo(f"amlwait: error: {error.format_message()}", err=True)
        sys.exit(2)
    except click.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
