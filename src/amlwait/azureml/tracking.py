"""A workspace's data-plane endpoints — run history and MLflow — found the way azure-ai-ml
finds them, and read with the ARM token.

Discovery, once per workspace per :class:`ServiceRunReader` (one reader per wait):

1. ``GET WS?api-version=…`` on ARM, through the job source (its retries, throttle, token
   and request count) → ``properties.discoveryUrl`` and ``properties.mlFlowTrackingUri``;
2. ``GET {discoveryUrl}`` (without a token: Azure serves the discovery document without
   one) → the run-history base: the document's ``history`` key, else its ``api`` key
   (azure-ai-ml's ``JobOperations._get_workspace_url`` builds its run-history client on
   ``api``; on Azure both are the region's ``https://{region}.api.azureml.ms``).

``mlFlowTrackingUri`` ``azureml://HOST/PATH`` is read as ``https://HOST/PATH`` (what the
azureml-mlflow plugin does); an ``http(s)://`` URI is used as is. A URL with plain
``http`` is used only when its host is loopback (:func:`amlwait.redact.is_loopback_url`),
as for ARM: the token never travels in clear to another machine.

The token is the ARM job source's (scope ``{ARM endpoint}/.default``): azure-ai-ml builds
its run-history client with the credential scopes of the cloud's resource manager
(``_azure_environments._get_cloud_information_from_metadata``), and the MLflow plugin uses
the same workspace credential.

Reads (:class:`TrackingClient`, one workspace):

- :meth:`~TrackingClient.run_details`: ``GET {history}/history/v1.0{WS}/runs/{id}/details``
  (``startTimeUtc``, ``endTimeUtc``, ``error.error.{code,message}``);
- :meth:`~TrackingClient.get_run`: ``GET {mlflow}/api/2.0/mlflow/runs/get?run_id=``;
- :meth:`~TrackingClient.search_runs`: ``POST {mlflow}/api/2.0/mlflow/runs/search``;
- :meth:`~TrackingClient.experiment_id`: ``GET {mlflow}/api/2.0/mlflow/experiments/
  get-by-name`` (``runs/search`` needs experiment ids; a job names its experiment).

A :class:`TrackingClient` sends through a :class:`DataPlaneSender`: :class:`DataPlaneHttp`
(its own client, for run facts and pipeline steps) or :class:`ArmRouted` (the ARM job
source's token, request budget, retries and count: ``--read-path mlflow``'s searches,
:class:`MlflowSearches`).

Every request has a time limit (``request_timeout``); a dropped connection, a timeout, 429
or 5xx is tried once more after ``RETRY_PAUSE`` seconds, a 401 once more with a fresh
token. Whatever else goes wrong raises :class:`TrackingError` (a
:class:`~amlwait.core.source.RunFactsUnavailable`) saying in a few words what — never the
token, never a body.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from amlwait.azureml.credentials import TokenProvider
from amlwait.azureml.http import amlwait_client
from amlwait.core.changes import RunSearch, SeenRun, run_id_filter
from amlwait.core.clock import Clock, SystemClock
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.source import RunFacts, RunFactsUnavailable
from amlwait.errors import ServiceError
from amlwait.redact import is_loopback_url

if TYPE_CHECKING:
    from amlwait.azureml.arm import ArmJobSource

REQUEST_TIMEOUT = 10.0
RETRY_PAUSE = 0.5
# Run ids per ``runs/search``. Azure ML documents no limit on an ``IN`` list; 100 names of
# at most 255 characters keep a filter under 26 KB, and a batch of 300 circuits is 3 searches.
SEARCH_CHUNK = 100
# Pages followed per search (each page holds up to ``max_results`` runs): a bound, not a
# expectation — a search for N run ids asks for N results and gets one page.
MAX_SEARCH_PAGES = 10
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
_FRACTION = re.compile(r"(\.\d{6})\d+")


class TrackingError(RunFactsUnavailable):
    """A data-plane read that did not work; ``status_code`` when the service answered."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class WorkspaceEndpoints:
    """Where a workspace's MLflow tracking API and run history are (no trailing ``/``);
    ``history`` None: not discovered (the MLflow read path needs none)."""

    mlflow: str
    history: str | None = None


@dataclass(frozen=True)
class RunsPage:
    """One answer of ``runs/search``: MLflow ``Run`` objects and the next page's token."""

    runs: list[dict[str, Any]]
    next_page_token: str | None


def mlflow_base_url(tracking_uri: str) -> str:
    """The http(s) base of an ``mlFlowTrackingUri``: ``azureml://HOST/PATH`` →
    ``https://HOST/PATH``; ``http(s)://…`` as is. :class:`TrackingError` otherwise."""
    parts = urlsplit(tracking_uri.strip())
    if parts.scheme == "azureml":
        parts = parts._replace(scheme="https")
    elif parts.scheme not in ("http", "https"):
        raise TrackingError(f"the workspace's mlFlowTrackingUri has scheme {parts.scheme!r}")
    if not parts.netloc:
        raise TrackingError("the workspace's mlFlowTrackingUri has no host")
    return urlunsplit(parts._replace(query="", fragment="")).rstrip("/")


def parse_utc(text: Any) -> float | None:
    """Epoch seconds of an ISO-8601 time (``Z`` or an offset; more than six fraction
    digits, as .NET writes them, are cut to six); ``None`` for anything else."""
    if not isinstance(text, str) or not text.strip():
        return None
    cleaned = _FRACTION.sub(r"\1", text.strip()).replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _epoch_ms(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number / 1000.0 if math.isfinite(number) and number > 0 else None


def facts_from_details(details: Mapping[str, Any]) -> RunFacts:
    """:class:`RunFacts` from run history's ``RunDetails`` (or ``Run``)."""
    error = details.get("error") or {}
    inner = error.get("error") if isinstance(error, Mapping) else None
    inner = inner if isinstance(inner, Mapping) else {}
    code, message = inner.get("code"), inner.get("message")
    return RunFacts(
        started_at=parse_utc(details.get("startTimeUtc")),
        ended_at=parse_utc(details.get("endTimeUtc")),
        error_code=str(code) if code else None,
        error_message=str(message).strip() if message and str(message).strip() else None,
    )


def facts_from_mlflow(run: Mapping[str, Any]) -> tuple[str, RunFacts] | None:
    """``(run_id, times)`` from an MLflow ``Run``; ``None`` when it names no run."""
    info = run.get("info") or {}
    run_id = info.get("run_id") or info.get("run_uuid")
    if not run_id:
        return None
    facts = RunFacts(
        started_at=_epoch_ms(info.get("start_time")), ended_at=_epoch_ms(info.get("end_time"))
    )
    return str(run_id), facts


class DataPlaneSender(Protocol):
    """How a :class:`TrackingClient` sends: the JSON answer of a 200, or an error naming
    ``what`` (a 404 is :class:`TrackingError` with ``status_code`` 404)."""

    async def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        with_token: bool = True,
    ) -> Any: ...


class DataPlaneHttp:
    """Requests to data-plane hosts with the ARM token, bounded and counted."""

    def __init__(
        self,
        credential: TokenProvider,
        *,
        clock: Clock | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.credential = credential
        self.clock = clock or SystemClock()
        self.requests_sent = 0
        self._client = amlwait_client(request_timeout, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        with_token: bool = True,
    ) -> Any:
        """The JSON answer of a 200; :class:`TrackingError` naming ``what`` otherwise."""
        if urlsplit(url).scheme != "https" and not is_loopback_url(url):
            raise TrackingError(
                f"{what} is at {urlsplit(url).scheme}://{urlsplit(url).netloc}: not https and "
                "not loopback, so no token is sent there"
            )
        refreshed = False
        for attempt in (1, 2, 3):
            headers = {"x-ms-client-request-id": str(uuid.uuid4())}
            if with_token:
                headers["Authorization"] = f"Bearer {await self.credential.token()}"
            self.requests_sent += 1
            try:
                response = await self._client.request(
                    method, url, params=params, json=json, headers=headers
                )
            except httpx.TransportError as error:
                if attempt == 1:
                    await self.clock.sleep(RETRY_PAUSE)
                    continue
                raise TrackingError(f"{what} unreachable ({type(error).__name__})") from None
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except ValueError:
                    raise TrackingError(f"{what} answered something that is not JSON") from None
            if status == 401 and with_token and not refreshed and self.credential.invalidate():
                refreshed = True
                continue
            if status in _RETRYABLE and attempt == 1:
                await self.clock.sleep(RETRY_PAUSE)
                continue
            raise TrackingError(
                f"{what} refused ({status}{_error_code(response)})", status_code=status
            )
        raise TrackingError(f"{what} kept failing")


def _error_code(response: httpx.Response) -> str:
    """`` Code`` from an ARM-style or MLflow-style error body, or nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, Mapping):
        return ""
    error = body.get("error")
    code = error.get("code") if isinstance(error, Mapping) else body.get("error_code")
    return f" {str(code)[:60]}" if code else ""


class ArmRouted:
    """A :class:`DataPlaneSender` through the ARM job source (:meth:`ArmJobSource.send`):
    its token, request budget, retries and request count. What it refuses raises as a job
    read does (:class:`~amlwait.errors.AmlwaitError`); a 404 is :class:`TrackingError`.
    Every request carries the token (``with_token`` is for :class:`DataPlaneHttp`'s
    discovery read, which never comes this way)."""

    def __init__(self, arm: ArmJobSource) -> None:
        self.arm = arm

    async def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        with_token: bool = True,
    ) -> Any:
        answer = await self.arm.send(method, url, params=params, json=json)
        if answer.status_code == 404:
            route = url.rsplit("/api/2.0/mlflow/", 1)[-1]
            raise TrackingError(f"{what} {route} answered 404", status_code=404)
        try:
            return answer.json()
        except ValueError:
            raise ServiceError(f"{what} answered something that is not JSON") from None


class TrackingClient:
    """Run history and the MLflow tracking API of one workspace."""

    def __init__(
        self, http: DataPlaneSender, workspace: WorkspaceRef, endpoints: WorkspaceEndpoints
    ) -> None:
        self.http = http
        self.workspace = workspace
        self.endpoints = endpoints

    def _mlflow(self, route: str) -> str:
        return f"{self.endpoints.mlflow}/api/2.0/mlflow/{route}"

    async def run_details(self, run_id: str) -> dict[str, Any]:
        """Run history's ``RunDetails`` of ``run_id`` (a job's run id is its name)."""
        if self.endpoints.history is None:
            raise TrackingError("run history was not discovered for this workspace")
        url = (
            f"{self.endpoints.history}/history/v1.0{self.workspace.arm_path}"
            f"/runs/{quote(run_id, safe='')}/details"
        )
        body = await self.http.send("GET", url, what="run history")
        return body if isinstance(body, dict) else {}

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """MLflow's ``Run`` of ``run_id`` (``{"info": …, "data": …}``)."""
        body = await self.http.send(
            "GET", self._mlflow("runs/get"), what="MLflow", params={"run_id": run_id}
        )
        run = body.get("run") if isinstance(body, dict) else None
        if not isinstance(run, dict):
            raise TrackingError("MLflow runs/get answered without a run")
        return run

    async def search_runs(
        self,
        experiment_ids: Sequence[str] | None,
        filter: str = "",
        max_results: int = 1000,
        page_token: str | None = None,
        order_by: Sequence[str] | None = None,
        run_view_type: str | None = None,
    ) -> RunsPage:
        """One page of ``runs/search``. ``experiment_ids=None`` leaves them out (MLflow
        servers differ on what that means; Azure ML's documented use names them);
        ``run_view_type`` None leaves it out (MLflow's default, ``ACTIVE_ONLY``)."""
        body: dict[str, Any] = {}
        if experiment_ids is not None:
            body["experiment_ids"] = list(experiment_ids)
        body["filter"] = filter
        body["max_results"] = max_results
        if run_view_type:
            body["run_view_type"] = run_view_type
        if page_token:
            body["page_token"] = page_token
        if order_by:
            body["order_by"] = list(order_by)
        answer = await self.http.send("POST", self._mlflow("runs/search"), what="MLflow", json=body)
        answer = answer if isinstance(answer, dict) else {}
        runs = [run for run in answer.get("runs") or [] if isinstance(run, dict)]
        token = answer.get("next_page_token")
        return RunsPage(runs, str(token) if token else None)

    async def _experiment_by_name(self, name: str) -> str | None:
        body = await self.http.send(
            "GET",
            self._mlflow("experiments/get-by-name"),
            what="MLflow",
            params={"experiment_name": name},
        )
        experiment = body.get("experiment") if isinstance(body, dict) else None
        found = experiment.get("experiment_id") if isinstance(experiment, dict) else None
        return str(found) if found else None

    async def experiment_id(self, name: str) -> str:
        """The MLflow id of the experiment called ``name``."""
        found = await self._experiment_by_name(name)
        if found is None:
            raise TrackingError(f"MLflow gave no id for experiment {name!r}")
        return found

    async def find_experiment_id(self, name: str) -> str | None:
        """The MLflow id of the experiment called ``name``; None when MLflow does not know
        it (yet): a 404, or an answer without an id."""
        try:
            return await self._experiment_by_name(name)
        except TrackingError as error:
            if error.status_code == 404:
                return None
            raise


async def discover_endpoints(
    arm: ArmJobSource, http: DataPlaneHttp, workspace: WorkspaceRef
) -> WorkspaceEndpoints:
    """The workspace's run-history and MLflow bases (two requests: ARM, discovery)."""
    try:
        resource = await arm.get_workspace(workspace)
    except Exception as error:  # an ARM refusal ends this read, never the wait
        raise TrackingError(f"the workspace resource could not be read: {error}") from None
    properties = resource.get("properties") or {}
    discovery_url = properties.get("discoveryUrl")
    tracking_uri = properties.get("mlFlowTrackingUri")
    if not discovery_url or not tracking_uri:
        raise TrackingError("the workspace resource names no discoveryUrl/mlFlowTrackingUri")
    document = await http.send("GET", str(discovery_url), what="discovery", with_token=False)
    base = (document.get("history") or document.get("api")) if isinstance(document, dict) else None
    if not base:
        raise TrackingError("the discovery document names no history service")
    return WorkspaceEndpoints(mlflow=mlflow_base_url(tracking_uri), history=str(base).rstrip("/"))


class ServiceRunReader:
    """The :class:`~amlwait.core.source.RunReader` over run history and MLflow, for one
    wait: each workspace's endpoints are discovered once (concurrent callers share the one
    discovery; a failed discovery is not tried again), each experiment's id read once.

    Requests: per workspace 1 ARM GET + 1 discovery GET (at the first read), 1 experiment
    lookup per experiment named by the runs to time; per :meth:`run_details` 1 GET; per
    :meth:`run_times` ``ceil(runs / chunk)`` searches per workspace.
    """

    def __init__(
        self,
        arm: ArmJobSource,
        *,
        clock: Clock | None = None,
        chunk: int = SEARCH_CHUNK,
        request_timeout: float = REQUEST_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.arm = arm
        self.chunk = chunk
        self.http = DataPlaneHttp(
            arm.credential, clock=clock, request_timeout=request_timeout, transport=transport
        )
        self._discoveries: dict[WorkspaceRef, asyncio.Future[TrackingClient]] = {}
        self._experiments: dict[tuple[WorkspaceRef, str], asyncio.Future[str]] = {}

    @property
    def requests_sent(self) -> int:
        """Data-plane requests (the ARM workspace GET is counted by the job source)."""
        return self.http.requests_sent

    async def aclose(self) -> None:
        futures: list[asyncio.Future[Any]] = [
            *self._discoveries.values(),
            *self._experiments.values(),
        ]
        for future in futures:
            future.cancel()
        await asyncio.gather(*futures, return_exceptions=True)
        await self.http.aclose()

    async def client(self, workspace: WorkspaceRef) -> TrackingClient:
        """The workspace's tracking client, discovering its endpoints on first use."""
        future = self._discoveries.get(workspace)
        if future is None:
            future = asyncio.ensure_future(self._discover(workspace))
            self._discoveries[workspace] = future
        # Shielded: a caller that gives up (its time is over) must not cancel the one
        # discovery other callers share.
        return await asyncio.shield(future)

    async def _discover(self, workspace: WorkspaceRef) -> TrackingClient:
        endpoints = await discover_endpoints(self.arm, self.http, workspace)
        return TrackingClient(self.http, workspace, endpoints)

    async def _experiment_id(self, client: TrackingClient, name: str) -> str:
        key = (client.workspace, name)
        future = self._experiments.get(key)
        if future is None:
            future = asyncio.ensure_future(client.experiment_id(name))
            self._experiments[key] = future
        return await asyncio.shield(future)

    async def run_details(self, ref: JobRef) -> RunFacts:
        client = await self.client(ref.workspace)
        return facts_from_details(await client.run_details(ref.name))

    async def run_times(
        self, refs: Sequence[JobRef], experiments: Mapping[JobRef, str]
    ) -> dict[JobRef, RunFacts]:
        """Times from ``runs/search`` with ``attributes.run_id IN (…)``, ``chunk`` runs a
        search. What one workspace or chunk cannot answer is left out; raises only when
        nothing at all could be read."""
        found: dict[JobRef, RunFacts] = {}
        problem: RunFactsUnavailable | None = None
        by_workspace: dict[WorkspaceRef, list[JobRef]] = {}
        for ref in refs:
            by_workspace.setdefault(ref.workspace, []).append(ref)
        for workspace, members in by_workspace.items():
            try:
                found.update(await self._times_in(workspace, members, experiments))
            except RunFactsUnavailable as error:
                problem = error
        if problem is not None and not found:
            raise problem
        return found

    async def _times_in(
        self, workspace: WorkspaceRef, refs: Sequence[JobRef], experiments: Mapping[JobRef, str]
    ) -> dict[JobRef, RunFacts]:
        client = await self.client(workspace)
        names = sorted({experiments.get(ref) or "Default" for ref in refs})
        ids = [await self._experiment_id(client, name) for name in names]
        wanted = {ref.name: ref for ref in refs}
        ordered = sorted(wanted)
        found: dict[JobRef, RunFacts] = {}
        for start in range(0, len(ordered), self.chunk):
            chunk = ordered[start : start + self.chunk]
            token: str | None = None
            for _ in range(MAX_SEARCH_PAGES):
                page = await client.search_runs(ids, run_id_filter(chunk), len(chunk), token)
                for run in page.runs:
                    parsed = facts_from_mlflow(run)
                    if parsed is not None and parsed[0] in wanted:
                        found[wanted[parsed[0]]] = parsed[1]
                token = page.next_page_token
                if token is None:
                    break
        return found


class MlflowSearches:
    """``--read-path mlflow``'s searches (:class:`~amlwait.core.changes.RunSearch`) over
    :class:`TrackingClient`, sent through the ARM job source (:class:`ArmRouted`). One
    instance per wait: each workspace's tracking URI is read once (``GET WS``), each
    experiment id once it is known (MLflow may not know an experiment yet: asked again
    at the next search). Whatever fails raises :class:`~amlwait.errors.AmlwaitError`,
    as a job read does."""

    def __init__(self, arm: ArmJobSource) -> None:
        self.arm = arm
        self.http = ArmRouted(arm)
        self._clients: dict[WorkspaceRef, TrackingClient | None] = {}
        self._experiments: dict[tuple[WorkspaceRef, str], str] = {}

    async def tracking_uri(self, workspace: WorkspaceRef) -> str | None:
        """The http(s) base of the workspace's ``mlFlowTrackingUri``; None when its
        resource names none."""
        if workspace not in self._clients:
            resource = await self.arm.get_workspace(workspace)
            uri = (resource.get("properties") or {}).get("mlFlowTrackingUri")
            client = None
            if uri:
                try:
                    endpoints = WorkspaceEndpoints(mlflow_base_url(str(uri)))
                except TrackingError as error:
                    raise ServiceError(str(error)) from None
                client = TrackingClient(self.http, workspace, endpoints)
            self._clients[workspace] = client
        found = self._clients[workspace]
        return None if found is None else found.endpoints.mlflow

    async def search(self, search: RunSearch) -> tuple[list[SeenRun], str | None]:
        """One page of ``search``: its runs, and the next page's token (None: last)."""
        await self.tracking_uri(search.workspace)
        client = self._clients[search.workspace]
        if client is None:
            raise ServiceError(f"workspace {search.workspace} advertises no MLflow tracking URI")
        try:
            ids = [
                found
                for name in search.experiments
                if (found := await self._experiment_id(client, name)) is not None
            ]
            if not ids:
                return [], None
            page = await client.search_runs(
                ids,
                search.filter,
                search.max_results,
                search.page_token,
                search.order_by,
                run_view_type="ACTIVE_ONLY",
            )
        except TrackingError as error:
            raise ServiceError(str(error), status_code=error.status_code) from None
        return [_seen_run(run) for run in page.runs], page.next_page_token

    async def _experiment_id(self, client: TrackingClient, name: str) -> str | None:
        key = (client.workspace, name)
        if key not in self._experiments:
            found = await client.find_experiment_id(name)
            if found is None:
                return None
            self._experiments[key] = found
        return self._experiments[key]


def _seen_run(run: Mapping[str, Any]) -> SeenRun:
    """An MLflow ``Run`` as the change feed reads it: id, status, end (epoch ms)."""
    info = run.get("info") or {}
    end = info.get("end_time")
    return SeenRun(
        str(info.get("run_id") or info.get("run_uuid") or ""),
        str(info.get("status") or ""),
        int(end) if end is not None else None,
    )
