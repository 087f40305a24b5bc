"""The ARM jobs API of the local workspace, over any :class:`~.backend.Backend`.

Routes (``WS`` = ``/subscriptions/{sub}/resourceGroups/{rg}/providers/
Microsoft.MachineLearningServices/workspaces/{ws}``; any names are accepted, the fixed
segments match case-insensitively as in ARM):

- ``GET WS/jobs`` (``tag``, ``listViewType``, ``$skipToken``), ``GET``/``PUT WS/jobs/{name}``,
  ``POST WS/jobs/{name}/cancel``,
- ``GET /subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/local/
  mfeOperationResults/{id}``: the cancel operation, 202 until the job is terminal, then 200.
- ``GET WS/jobs/{name}/amlwaitLogs``: **local only, not ARM** (served when the app is given
  ``logs``, as :class:`~.local.LocalWorkspace` does): the job's ``user_logs/std_log.txt``
  as ``text/plain; charset=utf-8`` (empty until the job writes), or the ARM 404 of an
  unknown job. Without ``logs`` the route does not exist (404, like Azure).

Each request goes, in order, through: the request log (``x-ms-request-id``), injected
faults, authentication (``Authorization: Bearer``; the configured token if any, compared
in constant time), routing (404 / 405), ``api-version`` (400), the throttle (429), and the
handler. Every refusal is an ARM error body; an unexpected exception becomes a 500 with
one, never a traceback. GET answers carry ``x-ms-ratelimit-remaining-subscription-reads``
(from the throttle, else 249).

``nextLink`` and the cancel ``Location`` are absolute URLs built from the scheme and
``Host`` the client used, so they work through whatever address the client chose.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from amlwait.core.clock import Clock
from amlwait.core.jobs import JobRef, WorkspaceRef, is_valid_job_name
from amlwait.workspace.assets import code_assets_of
from amlwait.workspace.backend import Backend, CancelOutcome, ListQuery, ListView
from amlwait.workspace.document import job_document, parse_put_body
from amlwait.workspace.errors import ArmError, error_response, format_seconds
from amlwait.workspace.faults import FaultMiddleware, FaultPlan
from amlwait.workspace.requestlog import RequestLog, RequestLogMiddleware
from amlwait.workspace.throttle import Throttle

logger = logging.getLogger(__name__)

DEFAULT_READS_REMAINING = 249
OPERATION_LOCATION = "local"

_WS = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
)
_OPERATION = (
    r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.MachineLearningServices"
    r"/locations/(?P<location>[^/]+)/mfeOperationResults/(?P<operation>[^/]+)"
)


@dataclass(frozen=True)
class AppSettings:
    token: str | None = None
    page_size: int = 100
    cancel_retry_after: float = 10.0

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {self.page_size}")
        if self.cancel_retry_after < 0:
            raise ValueError("cancel_retry_after cannot be negative")


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
    """The whole ASGI app: request log, then faults, then the ARM API over ``backend``."""
    api = _ArmApi(backend, settings, throttle, logs)
    assets = code_assets_of(backend)  # the local workspace's code assets (see .assets)
    served: ASGIApp = api
    if assets is not None:
        api.routes.extend((_route(_WS + path), handlers) for path, handlers in assets.arm_routes())
        served = assets.blob_app(api)
    return RequestLogMiddleware(FaultMiddleware(served, plan=faults), log=log, clock=clock)


Handler = Callable[[Request, Mapping[str, str]], Awaitable[Response]]
JobLogs = Callable[[JobRef], "str | None"]
"""A job's log text (``""`` before any), or ``None`` when there is no such job."""


def list_query(request: Request, page_size: int) -> ListQuery:
    """What a LIST request asks for (``tag``, ``listViewType``, ``$skipToken``)."""
    view_name = request.query_params.get("listViewType", ListView.ACTIVE_ONLY.value)
    try:
        view = ListView(view_name)
    except ValueError:
        raise ArmError(
            400,
            "UserError",
            f"listViewType {view_name!r} is not one of ActiveOnly, ArchivedOnly, All.",
        ) from None
    return ListQuery(
        tag=request.query_params.get("tag") or None,
        view=view,
        skip_token=request.query_params.get("$skipToken") or None,
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
        self.routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (_route(_WS + r"/jobs"), {"GET": self.list_jobs}),
            (_route(_WS + r"/jobs/(?P<name>[^/]+)"), {"GET": self.get_job, "PUT": self.put_job}),
            (_route(_WS + r"/jobs/(?P<name>[^/]+)/cancel"), {"POST": self.cancel_job}),
            (_route(_OPERATION), {"GET": self.operation_status}),
        ]
        if logs is not None:
            self.routes.append(
                (_route(_WS + r"/jobs/(?P<name>[^/]+)/amlwaitLogs"), {"GET": self.get_log})
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        reads_remaining: int | None = None
        try:
            self._authenticate(request)
            handler, params = self._route(request)
            if "api-version" not in request.query_params:
                raise ArmError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            reads_remaining = self._throttle(request, params.get("sub", ""))
            response = await handler(request, params)
        except ArmError as exc:
            response = exc.response()
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

    def _authenticate(self, request: Request) -> None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise _unauthenticated("The request needs an 'Authorization: Bearer <token>' header.")
        expected = self.settings.token
        if expected is not None and not hmac.compare_digest(
            credential.encode("utf-8"), expected.encode("utf-8")
        ):
            raise _unauthenticated("The access token is not valid for this workspace.")

    def _route(self, request: Request) -> tuple[Handler, dict[str, str]]:
        path = request.url.path
        for pattern, handlers in self.routes:
            found = pattern.match(path)
            if found is None:
                continue
            handler = handlers.get(request.method)
            if handler is None:
                raise ArmError(
                    405,
                    "MethodNotAllowed",
                    f"{request.method} is not supported on {path}.",
                    headers={"Allow": ", ".join(handlers)},
                )
            return handler, found.groupdict()
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

    async def get_job(self, request: Request, params: Mapping[str, str]) -> Response:
        ref = _job_ref(params)
        view = self.backend.get_job(ref)
        if view is None:
            raise _job_not_found(ref)
        return JSONResponse(job_document(view))

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
        body: dict[str, Any] = {"value": [job_document(job) for job in page.jobs]}
        if page.next_skip_token is not None:
            body["nextLink"] = _next_link(request, page.next_skip_token)
        return JSONResponse(body)

    async def put_job(self, request: Request, params: Mapping[str, str]) -> Response:
        ref = _job_ref(params)
        properties = parse_put_body(await request.body())
        view, created = self.backend.put_job(ref, properties)
        return JSONResponse(job_document(view), status_code=201 if created else 200)

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

    def _pending_headers(self, location: str) -> dict[str, str]:
        return {
            "Location": location,
            "Retry-After": format_seconds(self.settings.cancel_retry_after),
        }


def _route(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + pattern + "/?$", re.IGNORECASE)


def _workspace(params: Mapping[str, str]) -> WorkspaceRef:
    return WorkspaceRef(params["sub"], params["rg"], params["ws"])


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
        if key != "$skipToken"
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
