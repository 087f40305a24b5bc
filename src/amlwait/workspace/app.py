"""The local workspace's HTTP API, over any :class:`~.backend.Backend`.

Routes (``WS`` = ``/subscriptions/{sub}/resourceGroups/{rg}/providers/
Microsoft.MachineLearningServices/workspaces/{ws}``; the fixed segments match
case-insensitively as in ARM). The contract, with the documents each shape follows, is
written down in ``docs/workspace.md``.

ARM (``api-version`` required, one of :data:`SUPPORTED_API_VERSIONS`):

- ``GET WS``: the workspace resource (the spec's ``Workspace``), whose
  ``properties.discoveryUrl`` and ``properties.mlFlowTrackingUri`` point back at this server;
- ``GET WS/jobs`` (``tag``, ``listViewType``, ``$skip`` as the spec names it, and
  ``$skipToken``, which the ``nextLink`` carries as Azure ML's does),
  ``GET``/``PUT WS/jobs/{name}``, ``POST WS/jobs/{name}/cancel``,
- ``GET /subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/local/
  mfeOperationResults/{id}``: the cancel operation, 202 until the job is terminal, then 200.
- ``GET``/``PUT WS/components/{name}/versions/{version}`` (:mod:`~.components`; the local
  workspace's store only);
- ``GET WS/jobs/{name}/amlwaitLogs``: **local only, not ARM** (served when the app is given
  ``logs``, as :class:`~.local.LocalWorkspace` does): the job's ``user_logs/std_log.txt``
  as ``text/plain; charset=utf-8`` (empty until the job writes), or the ARM 404 of an
  unknown job. Without ``logs`` the route does not exist (404, like Azure). With ``logs``,
  every job document's ``services.Studio.endpoint`` is this route (with the request's
  scheme, host and ``api-version``), so report links work offline; without a configured
  token it is readable with no ``Authorization`` header, as a browser sends none.

Data plane (no ``api-version``; see :mod:`~.tracking`): ``GET /discovery`` (no token
needed, as Azure's), run history ``GET /history/v1.0{WS}/runs/{id}[/details|/children]``, and the
MLflow tracking subset under ``/mlflow/v1.0{WS}/api/2.0/mlflow/``.

Each request goes, in order, through: the request log (``x-ms-request-id``), injected
faults, the ``Host`` check (400 unless a name this server answers to: DNS rebinding),
authentication (``Authorization: Bearer``; the configured token if any, compared in
constant time), the body's media type (415 for a PUT/POST body that is not JSON), routing
(404 / 405), ``api-version`` (400), the workspace (ARM's 404s for one it does not serve,
:mod:`~.workspaces`), the throttle (429), and the handler. Every refusal is an error body
(ARM's ``{"error": {"code", "message"}}``; MLflow's ``{"error_code", "message"}`` on MLflow
routes); an unexpected exception becomes a 500 with one, never a traceback. GET answers
carry ``x-ms-ratelimit-remaining-subscription-reads`` (from the throttle, else 249).

``nextLink``, the cancel ``Location`` and the workspace's URLs are absolute URLs built from
the scheme and ``Host`` the client used, so they work through whatever address it chose.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from amlwait.core.clock import Clock
from amlwait.core.jobs import JobRef, WorkspaceRef, is_valid_job_name
from amlwait.redact import is_loopback_host
from amlwait.workspace import tracking
from amlwait.workspace.assets import code_assets_of
from amlwait.workspace.backend import Backend, CancelOutcome, ListQuery, ListView
from amlwait.workspace.components import component_routes
from amlwait.workspace.document import job_document, parse_put_body
from amlwait.workspace.errors import ArmError, error_response, format_seconds
from amlwait.workspace.faults import FaultMiddleware, FaultPlan
from amlwait.workspace.requestlog import RequestLog, RequestLogMiddleware
from amlwait.workspace.throttle import Throttle
from amlwait.workspace.webhooks import parse_patch_body
from amlwait.workspace.workspaces import KnownWorkspaces

logger = logging.getLogger(__name__)

DEFAULT_READS_REMAINING = 249
OPERATION_LOCATION = "local"
SUPPORTED_API_VERSIONS = (
    "2022-02-01-preview",
    "2022-05-01",
    "2022-10-01",
    "2022-10-01-preview",
    "2023-02-01-preview",
    "2023-04-01",
    "2023-04-01-preview",
    "2023-06-01-preview",
    "2023-08-01-preview",
    "2023-10-01",
    "2024-01-01-preview",
    "2024-04-01",
    "2024-04-01-preview",
    "2024-05-01-preview",
    "2024-10-01",
    "2024-10-01-preview",
    "2025-01-01-preview",
    "2025-12-01",
    "2026-05-01-preview",
)
"""The stable version of the shipped spec (2024-04-01), amlwait's default (2025-12-01) and
every version azure-ai-ml 1.35 pins one of its ARM clients to (``_ml_client.py``), with the
stable ones between; anything else is refused as ARM refuses an unregistered version."""
_API_VERSION_FORM = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?\Z")

_WS = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
)
_OPERATION = (
    r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.MachineLearningServices"
    r"/locations/(?P<location>[^/]+)/mfeOperationResults/(?P<operation>[^/]+)"
)
_HISTORY = r"/history/v1\.0" + _WS
_MLFLOW = r"/mlflow/v1\.0" + _WS + r"/api/2\.0/mlflow"
_JSON_TYPES = ("application/json", "text/json")


@dataclass(frozen=True)
class AppSettings:
    """``token``: the bearer token clients must send (``None``: any token).
    ``allowed_hosts``: the ``Host`` names answered besides loopback ones (``None``: any,
    for a server bound to a wildcard address behind a token). ``workspaces``: the
    workspaces served (default: any)."""

    token: str | None = None
    page_size: int = 100
    cancel_retry_after: float = 10.0
    allowed_hosts: frozenset[str] | None = frozenset()
    workspaces: KnownWorkspaces = field(default_factory=lambda: KnownWorkspaces(None))

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {self.page_size}")
        if self.cancel_retry_after < 0:
            raise ValueError("cancel_retry_after cannot be negative")


def allowed_hosts_for(bound_host: str) -> frozenset[str] | None:
    """The ``Host`` names a server bound to ``bound_host`` answers to besides loopback:
    the bound name itself, or any (``None``) for a wildcard bind (0.0.0.0, ::)."""
    bare = bound_host.strip("[]").lower()
    if bare in ("0.0.0.0", "::", ""):
        return None
    return frozenset({bare})


def create_app(
    backend: Backend,
    *,
    settings: AppSettings,
    clock: Clock,
    log: RequestLog,
    faults: FaultPlan,
    throttle: Throttle | None = None,
    logs: JobLogs | None = None,
) -> ASGIApp:
    """The whole ASGI app: request log, then faults, then the API over ``backend``."""
    api = _ArmApi(backend, settings, throttle, logs)
    components = component_routes(backend)  # the local workspace's component versions
    api.routes.extend(
        _Route(_route(_WS + path), handlers, child="components") for path, handlers in components
    )
    assets = code_assets_of(backend)  # the local workspace's code assets (see .assets)
    served: ASGIApp = api
    if assets is not None:
        api.routes.extend(
            _Route(_route(_WS + path), handlers, child="codes")
            for path, handlers in assets.arm_routes()
        )
        served = assets.blob_app(api)
    return RequestLogMiddleware(FaultMiddleware(served, plan=faults), log=log, clock=clock)


Handler = Callable[[Request, Mapping[str, str]], Awaitable[Response]]
JobLogs = Callable[[JobRef], "str | None"]
"""A job's log text (``""`` before any), or ``None`` when there is no such job."""


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    handlers: dict[str, Handler]
    kind: str = "arm"
    """``arm`` (api-version, ARM errors), ``history``, ``mlflow`` or ``public``."""
    child: str = "jobs"
    """The resource type under the workspace, for ARM's ParentResourceNotFound."""


def list_query(request: Request, page_size: int) -> ListQuery:
    """What a LIST request asks for (``tag``, ``listViewType``, ``$skip``/``$skipToken``)."""
    view_name = request.query_params.get("listViewType", ListView.ACTIVE_ONLY.value)
    try:
        view = ListView(view_name)
    except ValueError:
        raise ArmError(
            400,
            "UserError",
            f"listViewType {view_name!r} is not one of ActiveOnly, ArchivedOnly, All.",
        ) from None
    skip = request.query_params.get("$skip") or request.query_params.get("$skipToken")
    return ListQuery(
        tag=request.query_params.get("tag") or None,
        view=view,
        skip_token=skip or None,
        page_size=page_size,
    )


class _ArmApi:
    def __init__(
        self,
        backend: Backend,
        settings: AppSettings,
        throttle: Throttle | None,
        logs: JobLogs | None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.throttle = throttle
        self.logs = logs
        runs = tracking.RunApi(backend)
        self.routes: list[_Route] = [
            _Route(_route(_WS), {"GET": self.get_workspace}, child=""),
            _Route(_route(_WS + r"/jobs"), {"GET": self.list_jobs}),
            _Route(
                _route(_WS + r"/jobs/(?P<name>[^/]+)"),
                {"GET": self.get_job, "PUT": self.put_job, "PATCH": self.patch_job},
            ),
            _Route(_route(_WS + r"/jobs/(?P<name>[^/]+)/cancel"), {"POST": self.cancel_job}),
            _Route(_route(_OPERATION), {"GET": self.operation_status}, child=""),
            _Route(_route(r"/discovery"), {"GET": self.discovery}, kind="public"),
            _Route(
                _route(_HISTORY + r"/runs/(?P<name>[^/]+)"),
                {"GET": runs.history_run},
                kind="history",
                child="runs",
            ),
            _Route(
                _route(_HISTORY + r"/runs/(?P<name>[^/]+)/children"),
                {"GET": runs.history_children},
                kind="history",
                child="runs",
            ),
            _Route(
                _route(_HISTORY + r"/runs/(?P<name>[^/]+)/details"),
                {"GET": runs.history_details},
                kind="history",
                child="runs",
            ),
            _Route(_route(_MLFLOW + r"/runs/get"), {"GET": runs.mlflow_get_run}, kind="mlflow"),
            _Route(
                _route(_MLFLOW + r"/runs/search"),
                {"POST": runs.mlflow_search_runs},
                kind="mlflow",
            ),
            _Route(
                _route(_MLFLOW + r"/experiments/get-by-name"),
                {"GET": runs.mlflow_experiment_by_name},
                kind="mlflow",
            ),
            _Route(
                _route(_MLFLOW + r"/experiments/get"),
                {"GET": runs.mlflow_experiment},
                kind="mlflow",
            ),
        ]
        if logs is not None:
            self.routes.append(
                _Route(_route(_WS + r"/jobs/(?P<name>[^/]+)/amlwaitLogs"), {"GET": self.get_log})
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        reads_remaining: int | None = None
        kind = "arm"
        try:
            self._check_host(request)
            try:
                route, handler, params = self._route(request)
            except ArmError:
                self._authenticate(request)  # no path is revealed to a caller without a token
                raise
            kind = route.kind
            if kind != "public":
                self._authenticate(request)
            _check_media_type(request)
            if kind == "arm":
                _check_api_version(request)
            if "ws" in params:
                self.settings.workspaces.check(
                    params["sub"], params["rg"], params["ws"], child=route.child
                )
            reads_remaining = self._throttle(request, params.get("sub", ""))
            response = await handler(request, params)
        except ArmError as exc:
            response = tracking.mlflow_error(exc) if kind == "mlflow" else exc.response()
        except Exception:
            logger.exception("unexpected error answering %s %s", request.method, request.url.path)
            response = error_response(
                500, "InternalServerError", "The local workspace failed to answer this request."
            )
        if request.method in ("GET", "HEAD"):
            remaining = DEFAULT_READS_REMAINING if reads_remaining is None else reads_remaining
            response.headers.setdefault(
                "x-ms-ratelimit-remaining-subscription-reads", str(remaining)
            )
        await response(scope, receive, send)

    # -- the checks every request passes --------------------------------------------------

    def _check_host(self, request: Request) -> None:
        """Refuse a ``Host`` this server does not serve: a page that rebinds its own DNS
        name to 127.0.0.1 sends its own name here, never one of ours."""
        allowed = self.settings.allowed_hosts
        if allowed is None:
            return
        host = _host_name(request.headers.get("host", ""))
        if host and (is_loopback_host(host) or host in allowed):
            return
        raise ArmError(
            400,
            "InvalidHostHeader",
            "The Host header does not name this local workspace; use 127.0.0.1, localhost "
            "or the address it listens on.",
        )

    def _authenticate(self, request: Request) -> None:
        if self.settings.token is None and _is_log_page(request):
            return  # any bearer would do anyway; a browser following a report link has none
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise _unauthenticated("The request needs an 'Authorization: Bearer <token>' header.")
        expected = self.settings.token
        if expected is not None and not hmac.compare_digest(
            credential.encode("utf-8"), expected.encode("utf-8")
        ):
            raise _unauthenticated("The access token is not valid for this workspace.")

    def _route(self, request: Request) -> tuple[_Route, Handler, dict[str, str]]:
        path = request.url.path
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            handler = route.handlers.get(request.method)
            if handler is None:
                raise ArmError(
                    405,
                    "MethodNotAllowed",
                    f"{request.method} is not supported on {path}.",
                    headers={"Allow": ", ".join(route.handlers)},
                )
            return route, handler, found.groupdict()
        raise ArmError(404, "NotFound", f"The local workspace has no resource at {path}.")

    def _throttle(self, request: Request, subscription: str) -> int | None:
        if self.throttle is None:
            return None
        decision = self.throttle.take(request.method, subscription)
        if not decision.allowed:
            raise ArmError(
                429,
                "TooManyRequests",
                f"Number of requests for subscription '{subscription}' exceeded the limit. "
                f"Please retry after {decision.retry_after} seconds.",
                headers={
                    "Retry-After": str(decision.retry_after),
                    "x-ms-ratelimit-remaining-subscription-reads": str(decision.remaining),
                },
            )
        return decision.remaining if request.method in ("GET", "HEAD") else None

    # -- handlers -------------------------------------------------------------------------

    async def get_workspace(self, request: Request, params: Mapping[str, str]) -> Response:
        return JSONResponse(tracking.workspace_document(_workspace(params), _base_url(request)))

    async def discovery(self, request: Request, params: Mapping[str, str]) -> Response:
        return JSONResponse(tracking.discovery_document(_base_url(request)))

    async def get_job(self, request: Request, params: Mapping[str, str]) -> Response:
        ref = _job_ref(params)
        view = self.backend.get_job(ref)
        if view is None:
            raise _job_not_found(ref)
        return JSONResponse(job_document(view, self._job_page(request, ref)))

    async def get_log(self, request: Request, params: Mapping[str, str]) -> Response:
        ref = _job_ref(params)
        assert self.logs is not None  # the route exists only with a log reader
        text = self.logs(ref)
        if text is None:
            raise _job_not_found(ref)
        return PlainTextResponse(text)

    async def list_jobs(self, request: Request, params: Mapping[str, str]) -> Response:
        query = list_query(request, self.settings.page_size)
        page = self.backend.list_jobs(_workspace(params), query)
        body: dict[str, Any] = {
            "value": [job_document(job, self._job_page(request, job.ref)) for job in page.jobs]
        }
        if page.next_skip_token is not None:
            body["nextLink"] = _next_link(request, page.next_skip_token)
        return JSONResponse(body)

    async def put_job(self, request: Request, params: Mapping[str, str]) -> Response:
        ref = _job_ref(params)
        properties = parse_put_body(await request.body())
        view, created = self.backend.put_job(ref, properties)
        return JSONResponse(
            job_document(view, self._job_page(request, ref)), status_code=201 if created else 200
        )

    async def patch_job(self, request: Request, params: Mapping[str, str]) -> Response:
        """Set Azure DevOps webhooks (:mod:`~.webhooks`); the store's backend only."""
        ref = _job_ref(params)
        patch = getattr(self.backend, "patch_webhooks", None)
        if patch is None:
            raise ArmError(405, "MethodNotAllowed", "This workspace takes no PATCH of a job.")
        view = patch(ref, parse_patch_body(await request.body()))
        if view is None:
            raise _job_not_found(ref)
        return JSONResponse(job_document(view, self._job_page(request, ref)))

    async def cancel_job(self, request: Request, params: Mapping[str, str]) -> Response:
        ref = _job_ref(params)
        result = self.backend.cancel_job(ref)
        if result.outcome is CancelOutcome.NOT_FOUND:
            raise _job_not_found(ref)
        if result.outcome is CancelOutcome.ALREADY_TERMINAL or result.operation_id is None:
            return Response(status_code=200)
        location = _operation_url(request, ref.workspace.subscription, result.operation_id)
        return Response(status_code=202, headers=self._pending_headers(location))

    async def operation_status(self, request: Request, params: Mapping[str, str]) -> Response:
        done = self.backend.operation_done(params["operation"])
        if done is None:
            raise ArmError(404, "NotFound", f"The operation '{params['operation']}' was not found.")
        if done:
            return Response(status_code=200)
        return Response(status_code=202, headers=self._pending_headers(str(request.url)))

    def _job_page(self, request: Request, ref: JobRef) -> str | None:
        """The job's log route on this server (the Studio link of a local job), or None
        (Azure ML Studio's link) when this app serves no logs."""
        if self.logs is None:
            return None
        path = f"{ref.workspace.arm_path}/jobs/{ref.name}/amlwaitLogs"
        query = urlencode({"api-version": request.query_params.get("api-version", "")})
        return str(request.url.replace(path=path, query=query))

    def _pending_headers(self, location: str) -> dict[str, str]:
        return {
            "Location": location,
            "Retry-After": format_seconds(self.settings.cancel_retry_after),
        }


def _route(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + pattern + "/?$", re.IGNORECASE)


def _host_name(header: str) -> str:
    """The name of a ``Host`` header without its port (``[::1]:80`` → ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _check_media_type(request: Request) -> None:
    """A PUT or POST with a body must say it is JSON (a form or ``text/plain`` body is what
    a web page can send without a CORS preflight)."""
    if request.method not in ("PUT", "POST", "PATCH"):
        return
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    if not media_type and not has_body:
        return
    if media_type in _JSON_TYPES:
        return
    raise ArmError(
        415,
        "UnsupportedMediaType",
        f"The content media type '{media_type or 'none'}' is not supported. "
        "Only 'application/json' is supported.",
    )


def _check_api_version(request: Request) -> None:
    if "api-version" not in request.query_params:
        raise ArmError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    version = request.query_params["api-version"]
    if version in SUPPORTED_API_VERSIONS:
        return
    supported = ", ".join(SUPPORTED_API_VERSIONS)
    if not _API_VERSION_FORM.match(version):
        raise ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are '{supported}'.",
        )
    raise ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location 'local' and API version "
        f"'{version}' for type 'workspaces'. The supported api-versions are '{supported}'.",
    )


def _base_url(request: Request) -> str:
    return str(request.url.replace(path="", query="", fragment="")).rstrip("/")


def _workspace(params: Mapping[str, str]) -> WorkspaceRef:
    return WorkspaceRef(params["sub"], params["rg"], params["ws"])


def _is_log_page(request: Request) -> bool:
    return request.method == "GET" and request.url.path.rstrip("/").endswith("/amlwaitLogs")


def _job_ref(params: Mapping[str, str]) -> JobRef:
    name = params["name"]
    if not is_valid_job_name(name):
        raise ArmError(
            400,
            "UserError",
            f"'{name}' is not a valid job name: use 1 to 255 letters, digits, '-' or '_', "
            "starting with a letter or digit.",
        )
    return JobRef(_workspace(params), name)


def _job_not_found(ref: JobRef) -> ArmError:
    return ArmError(
        404,
        "NotFound",
        f"The job '{ref.name}' was not found in workspace '{ref.workspace.workspace}'.",
    )


def _unauthenticated(message: str) -> ArmError:
    return ArmError(401, "AuthenticationFailed", message, headers={"WWW-Authenticate": "Bearer"})


def _next_link(request: Request, skip_token: str) -> str:
    pairs = [
        (key, value)
        for key, value in parse_qsl(request.url.query, keep_blank_values=True)
        if key not in ("$skip", "$skipToken")
    ]
    pairs.append(("$skipToken", skip_token))
    return str(request.url.replace(query=urlencode(pairs, safe="$")))


def _operation_url(request: Request, subscription: str, operation_id: str) -> str:
    api_version = request.query_params.get("api-version", "")
    path = (
        f"/subscriptions/{subscription}/providers/Microsoft.MachineLearningServices"
        f"/locations/{OPERATION_LOCATION}/mfeOperationResults/{operation_id}"
    )
    query = urlencode({"api-version": api_version})
    return str(request.url.replace(path=path, query=query))
