"""Azure ML jobs over Azure Resource Manager — the production job source.

Every request goes through one place (:meth:`ArmJobSource._send`), which

- waits for a slot in the request budget (and honours ``Retry-After``),
- attaches a fresh bearer token (never over plain http except to loopback),
- retries 408/429/5xx, dropped connections and timeouts with capped exponential backoff
  and jitter, never past the wait's deadline,
- fetches a new token once after a 401,
- reads ``x-ms-ratelimit-remaining-subscription-reads`` to slow down before ARM must,
- and counts every request sent.

The same client serves Azure and the local workspace: only the endpoint differs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from amlwait import __version__
from amlwait.azureml.credentials import TokenProvider, default_token_provider, is_loopback
from amlwait.core.budget import RequestBudget
from amlwait.core.clock import Clock, SystemClock
from amlwait.core.jobs import JobRef, JobSnapshot, WorkspaceRef
from amlwait.core.retry import RetryPolicy, is_retryable_status
from amlwait.core.source import RunReader
from amlwait.core.status import JobStatus
from amlwait.errors import AuthenticationError, InputError, ServiceError
from amlwait.throttle import Throttle

DEFAULT_ENDPOINT = "https://management.azure.com"
DEFAULT_API_VERSION = "2025-12-01"
ENDPOINT_ENV = "AMLWAIT_ARM_ENDPOINT"
_REMAINING_READS = "x-ms-ratelimit-remaining-subscription-reads"
# Properties of a job the service fills in; a resubmission leaves them out.
_SERVICE_FILLED_PROPERTIES = frozenset({"status", "services", "isArchived", "parentJobName"})


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _error_text(response: httpx.Response) -> str:
    """``Code: message`` from an ARM error body, or the start of whatever came back."""
    try:
        error = response.json().get("error", {})
        code, message = error.get("code", ""), error.get("message", "")
        text = f"{code}: {message}" if code else str(message)
    except (ValueError, AttributeError):
        text = response.text
    text = " ".join(text.split())
    return text[:300] or response.reason_phrase


# ARM's codes for a 404 about the path above the job: the subscription, the resource group
# or the workspace does not exist (a missing job answers another code).
_MISSING_PARENT_CODES = frozenset(
    {"SubscriptionNotFound", "ResourceGroupNotFound", "ParentResourceNotFound"}
)


def missing_workspace_error(response: httpx.Response, workspace: WorkspaceRef) -> InputError | None:
    """An InputError naming the workspace when a 404 says the workspace, its resource group
    or its subscription does not exist; ``None`` for any other answer (a missing job)."""
    if response.status_code != 404:
        return None
    try:
        error = response.json().get("error") or {}
        code, message = str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        return None
    workspace_resource = "microsoft.machinelearningservices/workspaces/"
    names_workspace = code == "ResourceNotFound" and workspace_resource in message.lower()
    if code not in _MISSING_PARENT_CODES and not names_workspace:
        return None
    what = {
        "SubscriptionNotFound": f"subscription '{workspace.subscription}'",
        "ResourceGroupNotFound": f"resource group '{workspace.resource_group}'",
    }.get(code, f"workspace '{workspace.workspace}' in resource group '{workspace.resource_group}'")
    return InputError(
        f"the {what} was not found (404 {code}); check --subscription, --resource-group and "
        "--workspace-name (or the manifest's subscription/resource_group/workspace)"
    )


def parse_job(body: Mapping[str, Any]) -> JobSnapshot:
    """A job's ARM JSON as a snapshot. Pipeline child jobs have ``properties: null``."""
    name = str(body.get("name", ""))
    properties = body.get("properties") or {}
    status = properties.get("status") or JobStatus.UNKNOWN.value
    services = properties.get("services") or {}
    studio = (services.get("Studio") or {}).get("endpoint")
    tags = properties.get("tags") or {}
    created = (body.get("systemData") or {}).get("createdAt")
    experiment = properties.get("experimentName")
    return JobSnapshot(
        name=name,
        status=str(status),
        tags={str(k): str(v) for k, v in tags.items()},
        studio_url=str(studio) if studio else None,
        created_at=str(created) if created else None,
        experiment=str(experiment) if experiment else None,
    )


class ArmJobSource:
    """The job-source seam over ARM. Use as ``async with ArmJobSource(...) as source:``.

    ``endpoint`` defaults to ``$AMLWAIT_ARM_ENDPOINT``, else ``https://management.azure.com``.
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        credential: TokenProvider | None = None,
        clock: Clock | None = None,
        budget: RequestBudget | None = None,
        retry: RetryPolicy | None = None,
        request_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise InputError(
                f"--arm-endpoint {endpoint!r} is not an http(s) URL; "
                "e.g. https://management.azure.com or http://127.0.0.1:8765"
            )
        if parts.scheme == "http" and not is_loopback(endpoint):
            raise InputError(
                f"--arm-endpoint {endpoint} uses plain http to a host that is not loopback; "
                "a bearer token is sent only over https (or to 127.0.0.1/localhost)"
            )
        self.endpoint = endpoint.rstrip("/")
        self._origin = (parts.scheme, parts.netloc.lower())
        self.api_version = api_version
        self.credential = credential or default_token_provider(self.endpoint)
        self.clock = clock or SystemClock()
        self.throttle = Throttle(self.clock, budget)
        self.retry = retry or RetryPolicy()
        self._transport = transport  # the run reader's requests take the same way
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(request_timeout),
            transport=transport,
            headers={"User-Agent": f"amlwait/{__version__}"},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
            follow_redirects=False,
        )
        self._requests = 0

    async def __aenter__(self) -> ArmJobSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def requests_sent(self) -> int:
        return self._requests

    # -- URLs ---------------------------------------------------------------------------

    def _jobs_url(self, workspace: WorkspaceRef, name: str | None = None) -> str:
        url = f"{self.endpoint}{workspace.arm_path}/jobs"
        if name is not None:
            url += "/" + quote(name, safe="")
        return url

    def _check_same_origin(self, url: str) -> None:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise ServiceError(
                f"the service sent a nextLink to another host ({parts.scheme}://{parts.netloc}); "
                "refusing to send the token there"
            )

    # -- the one place requests are sent -----------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        job: str | None = None,
        ok_statuses: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        refreshed = False
        attempt = 1
        while True:
            await self.throttle.acquire()
            token = await self.credential.token()
            headers = {
                "Authorization": f"Bearer {token}",
                "x-ms-client-request-id": str(uuid.uuid4()),
            }
            self._requests += 1
            what = f"{method} {job or urlsplit(url).path}"
            try:
                response = await self._client.request(
                    method, url, params=params, json=json, headers=headers
                )
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}" + (f" ({error})" if str(error) else "")
                await self._backoff(attempt, None, what, problem)
                attempt += 1
                continue
            remaining = response.headers.get(_REMAINING_READS)
            if remaining is not None and remaining.isdigit():
                self.throttle.budget.note_remaining(int(remaining))
            status = response.status_code
            if status in ok_statuses or status == 404:
                return response
            if status == 401:
                if not refreshed and self.credential.invalidate():
                    refreshed = True
                    continue
                raise AuthenticationError(
                    f"Azure refused the token for {what} (401 {_error_text(response)}); "
                    "check the credential (az login / service connection / AMLWAIT_ACCESS_TOKEN)"
                )
            if status == 403:
                raise AuthenticationError(
                    f"no permission for {what} (403 {_error_text(response)}); the identity "
                    "needs a role that can read (and cancel) jobs in this workspace"
                )
            if is_retryable_status(status):
                retry_after = _retry_after(response)
                if retry_after is not None and status in (429, 503):
                    self.throttle.budget.hold_until(self.clock.now() + retry_after)
                await self._backoff(attempt, retry_after, what, f"{status} {_error_text(response)}")
                attempt += 1
                continue
            raise ServiceError(
                f"{what} was refused: {status} {_error_text(response)}",
                status_code=status,
                job=job,
            )

    async def _backoff(
        self, attempt: int, retry_after: float | None, what: str, problem: str
    ) -> None:
        if attempt >= self.retry.attempts:
            raise ServiceError(
                f"{what} kept failing: {problem.rstrip('.')} ({attempt} attempts); "
                f"is {self.endpoint} reachable and healthy?"
            )
        await self.throttle.pause(self.retry.delay(attempt + 1, retry_after))

    # -- the seam -----------------------------------------------------------------------

    async def get_job(self, ref: JobRef) -> JobSnapshot | None:
        body = await self.get_job_definition(ref)
        return None if body is None else parse_job(body)

    async def list_jobs_by_tag(self, workspace: WorkspaceRef, tag: str) -> list[JobSnapshot]:
        jobs: list[JobSnapshot] = []
        url: str | None = self._jobs_url(workspace)
        params: dict[str, str] | None = {
            "api-version": self.api_version,
            "tag": tag,
            "listViewType": "All",
        }
        while url is not None:
            response = await self._send("GET", url, params=params)
            missing = missing_workspace_error(response, workspace)
            if missing is not None:
                raise missing
            if response.status_code == 404:
                raise ServiceError(
                    f"workspace {workspace} was not found (404 {_error_text(response)}); "
                    "check --subscription, --resource-group and --workspace-name"
                )
            page = response.json()
            jobs.extend(parse_job(item) for item in page.get("value") or [])
            next_link = page.get("nextLink")
            if next_link:
                self._check_same_origin(next_link)
            url, params = (next_link or None), None  # nextLink is followed verbatim
        return jobs

    async def cancel_job(self, ref: JobRef) -> None:
        response = await self._send(
            "POST",
            self._jobs_url(ref.workspace, ref.name) + "/cancel",
            params={"api-version": self.api_version},
            job=ref.name,
            ok_statuses=(200, 202, 204),
        )
        missing = missing_workspace_error(response, ref.workspace)
        if missing is not None:
            raise missing
        if response.status_code == 404:
            raise ServiceError(
                f"cannot cancel {ref.name}: not found", status_code=404, job=ref.name
            )

    async def put_job(self, ref: JobRef, properties: Mapping[str, Any]) -> JobSnapshot:
        """Create (or update) a job: ``PUT …/jobs/{name}`` with ``{"properties": …}``."""
        response = await self._send(
            "PUT",
            self._jobs_url(ref.workspace, ref.name),
            params={"api-version": self.api_version},
            json={"properties": dict(properties)},
            job=ref.name,
            ok_statuses=(200, 201),
        )
        missing = missing_workspace_error(response, ref.workspace)
        if missing is not None:
            raise missing
        if response.status_code == 404:
            raise ServiceError(
                f"cannot create {ref.name}: workspace {ref.workspace} not found",
                status_code=404,
                job=ref.name,
            )
        return parse_job(response.json())

    async def resubmit_job(self, ref: JobRef, new_name: str) -> JobRef:
        """Create ``new_name`` from ``ref``'s own ARM definition: same properties and tags,
        without what the service fills in (status, service endpoints)."""
        body = await self.get_job_definition(ref)
        if body is None or not body.get("properties"):
            raise ServiceError(
                f"cannot resubmit {ref.name}: its definition was not found", job=ref.name
            )
        properties = {
            key: value
            for key, value in body["properties"].items()
            if key not in _SERVICE_FILLED_PROPERTIES
        }
        new = JobRef(ref.workspace, new_name)
        await self.put_job(new, properties)
        return new

    async def get_workspace(self, workspace: WorkspaceRef) -> dict[str, Any]:
        """The workspace's ARM resource (``GET WS``), whose ``properties`` name its
        data-plane endpoints (``discoveryUrl``, ``mlFlowTrackingUri``)."""
        response = await self._send(
            "GET", f"{self.endpoint}{workspace.arm_path}", params={"api-version": self.api_version}
        )
        missing = missing_workspace_error(response, workspace)
        if missing is not None:
            raise missing
        if response.status_code == 404:
            raise ServiceError(f"workspace {workspace} was not found", status_code=404)
        body: dict[str, Any] = response.json()
        return body

    def run_reader(self) -> RunReader:
        """A fresh reader of run history and MLflow for one wait (its endpoints are
        discovered through this source, with the same token)."""
        from amlwait.azureml.tracking import ServiceRunReader

        return ServiceRunReader(self, clock=self.clock, transport=self._transport)

    async def get_job_definition(self, ref: JobRef) -> dict[str, Any] | None:
        """The job's whole ARM body (for re-submission), or ``None`` when not found."""
        response = await self._send(
            "GET",
            self._jobs_url(ref.workspace, ref.name),
            params={"api-version": self.api_version},
            job=ref.name,
        )
        missing = missing_workspace_error(response, ref.workspace)
        if missing is not None:
            raise missing
        if response.status_code == 404:
            return None
        body: dict[str, Any] = response.json()
        return body
