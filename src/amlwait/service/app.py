"""The HTTP face of the waiting service (Starlette).

=====================================  =========================================  ========
route                                  does                                       key
=====================================  =========================================  ========
``POST /v1/waits``                     store a wait (202 ``{"waitId"}``)          header
``GET /v1/waits/{waitId}``             its jobs, their states, the outcome        header
``GET /healthz``                       ``ok`` (503: the store fails a write)      none
``GET /metrics``                       Prometheus text                            header
``POST /v1/events/eventgrid``          Event Grid handshake; run events wake      ``?key=``
``OPTIONS /v1/events/eventgrid``       CloudEvents handshake                      ``?key=``
=====================================  =========================================  ========

``POST /v1/waits`` only validates and writes to the store: no Azure call is made while
the pipeline waits for the answer, and nothing is sent anywhere for a refused request.
The key is ``X-Amlwait-Key``, compared in constant time. The ``AuthToken`` header goes to
the store only; it is never logged or echoed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from amlwait.core.clock import Clock, SystemClock
from amlwait.redact import scrub
from amlwait.service.models import (
    MAX_BODY_CHARS,
    RequestProblem,
    RunEvent,
    load_json,
    parse_callback,
    parse_wait_request,
)
from amlwait.service.store import Store, WaitRecord
from amlwait.service.watcher import Watcher

KEY_HEADER = "X-Amlwait-Key"
# How long /healthz waits for the store's write-and-read probe (a load balancer's probe
# typically times out after 5 s or more).
HEALTH_PROBE_SECONDS = 3.0
# Bytes read at most from a body: 4 per character of the 2,000 allowed, so the character
# count decides, and nobody can make us buffer more.
_MAX_BODY_BYTES = 4 * MAX_BODY_CHARS
# Event Grid delivers events of at most 1 MB, in batches of at most 1 MB
# (preferredBatchSizeInKilobytes ≤ 1024): a larger body is no Event Grid delivery. 413 is
# not retried by Event Grid. An Azure ML run event nests 4 levels (batch, event, data,
# runTags/runProperties); 32 leaves room for what Azure may add.
MAX_EVENTGRID_BODY_BYTES = 1024 * 1024 + 64 * 1024
MAX_EVENTGRID_NESTING = 32
log = logging.getLogger("amlwait.service")
_VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
_Handler = Callable[[Request], Awaitable[Response]]
_RUN_EVENTS = frozenset(
    {
        "Microsoft.MachineLearningServices.RunStatusChanged",
        "Microsoft.MachineLearningServices.RunCompleted",
    }
)


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def _read_body(
    request: Request, limit: int = _MAX_BODY_BYTES, *, status: int = 400, what: str = ""
) -> bytes:
    """The body, read as it streams in and refused (``status``) as soon as it passes
    ``limit`` bytes, so an oversized body is never buffered whole."""
    too_long = what or f"the body is too long; at most {MAX_BODY_CHARS} characters"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestProblem(status, too_long)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise RequestProblem(status, too_long)
    return bytes(body)


def wait_document(record: WaitRecord) -> dict[str, Any]:
    """What ``GET /v1/waits/{waitId}`` answers (never the token)."""
    result = record.result or {}
    request = record.request
    return {
        "waitId": record.wait_id,
        "state": record.state,
        "outcome": record.outcome,
        "result": result.get("result"),
        "reason": result.get("reason"),
        "tag": request.get("tag"),
        "expectedJobs": request.get("expectedJobs"),
        "workspace": {
            "subscription": request.get("subscription"),
            "resourceGroup": request.get("resourceGroup"),
            "workspace": request.get("workspace"),
        },
        "jobs": result.get("states") or [{"name": name} for name in result.get("jobs", [])],
        "createdAt": record.created_at,
        "deadline": record.deadline,
    }


class _ServiceApp:
    """The app's state (store, keys, watcher, clock, request counts) and its route handlers.

    Each handler answers one route of the table in the module docstring; a
    :class:`RequestProblem` it raises becomes a one-line JSON error (see :meth:`counted`).
    """

    def __init__(
        self,
        store: Store,
        *,
        allowed_orgs: Sequence[str],
        service_key: str | None,
        eventgrid_key: str | None,
        watcher: Watcher | None,
        clock: Clock,
    ) -> None:
        self.store = store
        self.orgs = tuple(allowed_orgs)
        self.service_key = service_key
        self.eventgrid_key = eventgrid_key
        self.watcher = watcher
        self.clock = clock
        self.requests_served: Counter[str] = Counter()

    # -- keys -------------------------------------------------------------------------------

    def check_key(self, request: Request) -> None:
        if self.service_key is None:
            return
        given = request.headers.get(KEY_HEADER)
        if not given:
            raise RequestProblem(401, f"missing header {KEY_HEADER}")
        if not _same(given, self.service_key):
            raise RequestProblem(401, f"wrong {KEY_HEADER}")

    def check_eventgrid_key(self, request: Request) -> None:
        keys = [key for key in (self.eventgrid_key, self.service_key) if key]
        if not keys:
            return
        given = request.query_params.get("key")
        # Every key is compared, so the time taken does not say which one nearly matched.
        matches = [_same(given, key) for key in keys]
        if not any(matches):
            raise RequestProblem(401, "missing or wrong ?key= on the Event Grid endpoint")

    # -- handlers ---------------------------------------------------------------------------

    async def create_wait(self, request: Request) -> Response:
        self.check_key(request)
        callback, token = parse_callback(request.headers, self.orgs)
        wait = parse_wait_request(await _read_body(request))
        now = self.clock.now()
        try:
            record, created = await asyncio.to_thread(
                self.store.create_wait,
                plan_key=callback.plan_key,
                request=wait.to_document(),
                callback=callback.to_document(),
                auth_token=token,
                deadline=now + wait.timeout_seconds,
                now=now,
            )
        except ValueError:  # the store refuses a token that also appears in plain text
            raise RequestProblem(400, "the AuthToken appears in the body or headers") from None
        except Exception as error:  # the store cannot take it now: say so, in one line
            log.warning("storing a wait failed: %s", " ".join(str(error).split())[:300])
            raise RequestProblem(
                503, "the service's store is unavailable; nothing was stored, try again later"
            ) from None
        if created and self.watcher is not None:
            self.watcher.nudge()
        return JSONResponse({"waitId": record.wait_id}, status_code=202)

    async def get_wait(self, request: Request) -> Response:
        self.check_key(request)
        wait_id = str(request.path_params["wait_id"])
        record = await asyncio.to_thread(self.store.get_wait, wait_id)
        if record is None:
            return _problem(404, f"no wait {wait_id[:80]!r}")
        return JSONResponse(wait_document(record))

    async def healthz(self, request: Request) -> Response:
        """``ok`` only when the store takes a write and reads it back within
        ``HEALTH_PROBE_SECONDS``; otherwise 503 and one line saying why."""
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.store.probe, now=self.clock.now()),
                timeout=HEALTH_PROBE_SECONDS,
            )
        except asyncio.TimeoutError:
            return PlainTextResponse(
                f"unhealthy: the store did not answer within {HEALTH_PROBE_SECONDS:g} s\n",
                status_code=503,
            )
        except Exception as error:
            problem = scrub(" ".join(str(error).split()))[:300] or type(error).__name__
            return PlainTextResponse(f"unhealthy: the store failed: {problem}\n", status_code=503)
        return PlainTextResponse("ok\n")

    async def metrics(self, request: Request) -> Response:
        self.check_key(request)
        store_metrics = await asyncio.to_thread(self.store.metrics)
        values = {f"store_{k}": v for k, v in store_metrics.items()}
        if self.watcher is not None:
            values.update(self.watcher.metrics())
        lines = []
        for name, value in sorted(values.items()):
            # Prometheus: a ``*_total`` only ever grows (a counter); the rest are gauges.
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# TYPE amlwait_{name} {kind}", f"amlwait_{name} {value}"]
        lines.append("# TYPE amlwait_http_requests_total counter")
        for route, count in sorted(self.requests_served.items()):
            lines.append(f'amlwait_http_requests_total{{route="{route}"}} {count}')
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def eventgrid_options(self, request: Request) -> Response:
        self.check_eventgrid_key(request)
        origin = request.headers.get("WebHook-Request-Origin", "")
        if not origin or len(origin) > 255 or any(ord(c) < 33 for c in origin):
            raise RequestProblem(400, "missing or invalid WebHook-Request-Origin header")
        return Response(
            status_code=200,
            headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"},
        )

    async def eventgrid(self, request: Request) -> Response:
        self.check_eventgrid_key(request)
        body = await _read_body(
            request,
            MAX_EVENTGRID_BODY_BYTES,
            status=413,
            what=f"the body is longer than {MAX_EVENTGRID_BODY_BYTES} bytes",
        )
        document = load_json(body, max_nesting=MAX_EVENTGRID_NESTING)
        events = document if isinstance(document, list) else [document]
        if not all(isinstance(event, dict) for event in events):
            raise RequestProblem(400, "expected an event or a list of events")
        for event in events:
            if _event_type(event) == _VALIDATION_EVENT:
                data = event.get("data")
                code = data.get("validationCode") if isinstance(data, dict) else None
                if not isinstance(code, str):
                    raise RequestProblem(400, "the validation event has no validationCode")
                return JSONResponse({"validationResponse": code})
        runs = [run for run in map(_run_of, events) if run is not None]
        woken = self.watcher.wake_runs(runs) if self.watcher is not None else 0
        return JSONResponse({"events": len(runs), "waitsWoken": woken})

    def counted(self, name: str, handler: _Handler) -> _Handler:
        """``handler`` counted under ``name``, its :class:`RequestProblem` as a JSON error."""

        async def endpoint(request: Request) -> Response:
            self.requests_served[name] += 1
            try:
                return await handler(request)
            except RequestProblem as problem:
                return _problem(problem.status, problem.message)

        return endpoint


def create_app(
    store: Store,
    *,
    allowed_orgs: Sequence[str],
    service_key: str | None,
    eventgrid_key: str | None = None,
    watcher: Watcher | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """The service's ASGI app. ``service_key`` ``None`` turns the key check off (only for
    ``--insecure-no-auth`` on loopback); ``watcher`` is told about new waits and events.
    ``clock`` stamps new waits (``createdAt``, ``deadline``): the watcher's clock when there
    is a watcher, else real time, so the app and the watcher measure a wait on one clock."""
    if clock is None:
        clock = watcher.clock if watcher is not None else SystemClock()
    app = _ServiceApp(
        store,
        allowed_orgs=allowed_orgs,
        service_key=service_key,
        eventgrid_key=eventgrid_key,
        watcher=watcher,
        clock=clock,
    )
    routes = [
        Route("/v1/waits", app.counted("create_wait", app.create_wait), methods=["POST"]),
        Route("/v1/waits/{wait_id}", app.counted("get_wait", app.get_wait), methods=["GET"]),
        Route("/healthz", app.counted("healthz", app.healthz), methods=["GET"]),
        Route("/metrics", app.counted("metrics", app.metrics), methods=["GET"]),
        Route("/v1/events/eventgrid", app.counted("eventgrid", app.eventgrid), methods=["POST"]),
        Route(
            "/v1/events/eventgrid",
            app.counted("eventgrid_handshake", app.eventgrid_options),
            methods=["OPTIONS"],
        ),
    ]
    return Starlette(routes=routes)


def _event_type(event: dict[str, Any]) -> str:
    return str(event.get("eventType") or event.get("type") or "")


def _run_of(event: dict[str, Any]) -> RunEvent | None:
    """The run an Azure ML run event is about (Event Grid or CloudEvents schema)."""
    kind = _event_type(event)
    if kind not in _RUN_EVENTS:
        return None
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(data, dict)
    run_id = data.get("runId")
    if not isinstance(run_id, str) or not run_id:
        subject = str(event.get("subject") or "")
        run_id = subject.rsplit("/runs/", 1)[1] if "/runs/" in subject else ""
    if not run_id:
        return None
    tags = data.get("runTags") if isinstance(data.get("runTags"), dict) else {}
    assert isinstance(tags, dict)
    status = data.get("runStatus")
    return RunEvent(
        run_id,
        tuple(str(key) for key in tags),
        status.strip().lower() if isinstance(status, str) and status.strip() else None,
        completed=kind.endswith(".RunCompleted"),
    )
