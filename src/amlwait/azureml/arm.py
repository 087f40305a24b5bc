"""Azure ML jobs over Azure Resource Manager — the production job source.

Every request goes through one place (:meth:`ArmJobSource._request`), which

- waits for a slot in the request budget (and honours ``Retry-After``, at most
  :data:`~amlwait.core.retry.MAX_RETRY_AFTER` seconds at a time),
- attaches a fresh bearer token (never over plain http except to loopback, and never
  through a proxy to loopback),
- bounds the whole exchange — connect, send, every byte of the answer — by
  ``request_timeout`` and by the time left before the wait's deadline
  (:data:`~amlwait.throttle.read_deadline`), and the answer's size by
  :data:`MAX_ANSWER_BYTES`,
- retries 408/429/5xx, dropped connections, timeouts and answers that are not the JSON ARM
  documents with capped exponential backoff and jitter: until the deadline when there is
  one (``amlwait wait``), else ``retry.attempts`` times,
- says once per episode of trouble what it retries, why and until when (``on_trouble``),
  and once more when the endpoint answers again,
- fetches a new token once after a 401; a second 401, or a 403, is final at once,
- reads ``x-ms-ratelimit-remaining-subscription-reads`` to slow down before ARM must,
- scrubs every token from every message it builds (server texts and httpx errors alike),
- and counts every request sent.

A listing follows ``nextLink`` only to the same origin, never to a page it has already
fetched, for at most :data:`MAX_LISTING_PAGES` pages and :data:`MAX_LISTED_JOBS` jobs,
checking the deadline before every page; a listing that breaks these rules raises
:class:`~amlwait.errors.ListingError` (the waiter reads those jobs by GET instead).

The same client serves Azure and the local workspace: only the endpoint differs.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json as _json
import math
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from amlwait import __version__
from amlwait.azureml.credentials import TokenProvider, default_token_provider, is_loopback
from amlwait.core.budget import RequestBudget
from amlwait.core.clock import Clock, SystemClock
from amlwait.core.jobs import JobRef, JobSnapshot, WorkspaceRef
from amlwait.core.retry import MAX_RETRY_AFTER, RetryPolicy, is_retryable_status, parse_retry_after
from amlwait.core.source import RunReader
from amlwait.core.status import JobStatus
from amlwait.errors import AuthenticationError, InputError, ListingError, ServiceError
from amlwait.redact import scrub
from amlwait.throttle import DeadlineReached, Throttle, read_deadline

DEFAULT_ENDPOINT = "https://management.azure.com"
DEFAULT_API_VERSION = "2025-12-01"
ENDPOINT_ENV = "AMLWAIT_ARM_ENDPOINT"
_REMAINING_READS = "x-ms-ratelimit-remaining-subscription-reads"
# Properties of a job the service fills in; a resubmission leaves them out.
_SERVICE_FILLED_PROPERTIES = frozenset({"status", "services", "isArchived", "parentJobName"})

# The largest answer read: an ARM page of jobs is well under 1 MB; a bigger body is not an
# answer we can use, and reading it whole would let a server fill our memory.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
# Bounds of one listing. amlwait is measured with batches of up to 10,000 jobs; a tag's
# listing may hold ten times that (archived batches, earlier attempts) before it is refused
# as unusable. Pages: ARM pages hold tens to hundreds of jobs; at one job a page a
# 10,000-job batch still lists in 10,000 pages, and half that many pages of a 100-job size
# hold every job of the cap. Past either bound the listing is an error of that listing.
MAX_LISTED_JOBS = 100_000
MAX_LISTING_PAGES = 10_000

T = TypeVar("T")
TroubleListener = Callable[[str], None]


class MalformedAnswer(ValueError):
    """A 2xx/404 answer that is not the JSON ARM documents (not JSON, an HTML page, a list
    where an object belongs, ``properties`` as a string); retried like a 5xx."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole (at most :data:`MAX_ANSWER_BYTES`)."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        try:
            return _json.loads(self.body)
        except ValueError:
            kind = self.headers.get("content-type", "no content type").split(";")[0]
            raise MalformedAnswer(
                f"{self.status} with a body that is not JSON ({kind}, {len(self.body)} bytes)"
            ) from None

    def json_object(self) -> dict[str, Any]:
        document = self.json()
        if not isinstance(document, dict):
            raise MalformedAnswer(
                f"{self.status} with JSON {type(document).__name__} where an object belongs"
            )
        return document

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def status_code(self) -> int:
        return self.status


def _printable(text: str) -> str:
    """``text`` on one line, without control characters (a server's text may hold
    newlines, terminal escapes or logging commands)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _error_text(answer: Answer, token: str | None = None) -> str:
    """``Code: message`` from an ARM error body, or the start of whatever came back;
    one printable line, every token scrubbed."""
    try:
        document = answer.json()
        error = document.get("error") if isinstance(document, dict) else None
        if not isinstance(error, dict):
            raise MalformedAnswer("no error object")
        code, message = error.get("code") or "", error.get("message") or ""
        text = f"{code}: {message}" if code else str(message)
    except MalformedAnswer:
        text = answer.text[:2000]
    text = _printable(scrub(text, token))
    return text[:300] or answer.reason


# ARM's codes for a 404 about the path above the job: the subscription, the resource group
# or the workspace does not exist (a missing job answers another code).
_MISSING_PARENT_CODES = frozenset(
    {"SubscriptionNotFound", "ResourceGroupNotFound", "ParentResourceNotFound"}
)


def missing_workspace_error(
    response: Answer | httpx.Response, workspace: WorkspaceRef
) -> InputError | None:
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
        f"the {what} was not found (404 {_printable(code)[:80]}); check --subscription, "
        "--resource-group and --workspace-name (or the manifest's "
        "subscription/resource_group/workspace)"
    )


def _object(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, ``{}`` when null or absent; else MalformedAnswer."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedAnswer(f"{what} is a JSON {type(value).__name__}, not an object")
    return value


def _optional_text(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedAnswer(f"{what} is a JSON {type(value).__name__}, not a string")
    return value


def parse_job(body: Any) -> JobSnapshot:
    """A job's ARM JSON as a snapshot. Pipeline child jobs have ``properties: null``.

    Raises :class:`MalformedAnswer` when the body is not shaped as ARM documents it
    (``properties`` as a string, ``tags`` as a list, ...).
    """
    job = _object(body, "the job")
    if not job:
        raise MalformedAnswer("the job is empty")
    name = _optional_text(job.get("name"), "name") or ""
    properties = _object(job.get("properties"), "properties")
    status = _optional_text(properties.get("status"), "properties.status")
    services = _object(properties.get("services"), "properties.services")
    studio = _object(services.get("Studio"), "properties.services.Studio").get("endpoint")
    tags = _object(properties.get("tags"), "properties.tags")
    created = _object(job.get("systemData"), "systemData").get("createdAt")
    experiment = _optional_text(properties.get("experimentName"), "properties.experimentName")
    return JobSnapshot(
        name=name,
        status=status or JobStatus.UNKNOWN.value,
        tags={str(k): str(v) for k, v in tags.items()},
        studio_url=str(studio) if studio else None,
        created_at=str(created) if created else None,
        experiment=str(experiment) if experiment else None,
    )


@dataclass(frozen=True)
class _Page:
    jobs: list[JobSnapshot]
    next_link: str | None


def _parse_page(answer: Answer) -> _Page:
    page = answer.json_object()
    items = page.get("value")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise MalformedAnswer(f"value is a JSON {type(items).__name__}, not a list")
    next_link = _optional_text(page.get("nextLink"), "nextLink")
    return _Page([parse_job(item) for item in items], next_link)


def _iso(moment: float) -> str:
    stamp = _dt.datetime.fromtimestamp(moment, tz=_dt.timezone.utc)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


class ArmJobSource:
    """The job-source seam over ARM. Use as ``async with ArmJobSource(...) as source:``.

    ``endpoint`` defaults to ``$AMLWAIT_ARM_ENDPOINT``, else ``https://management.azure.com``.

    ``request_timeout`` bounds each request as a whole (connect, send and the whole
    answer), not only each read; the time left before the deadline bounds it further.
    ``on_trouble`` receives one line when requests start failing (what, why, until when)
    and one when they succeed again; it never receives a token.
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
        on_trouble: TroubleListener | None = None,
    ) -> None:
        endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise InputError(
                f"--arm-endpoint {endpoint!r} is not an http(s) URL; "
                "e.g. https://management.azure.com or http://127.0.0.1:8765"
            )
        loopback = is_loopback(endpoint)
        if parts.scheme == "http" and not loopback:
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
        self.request_timeout = request_timeout
        self.on_trouble = on_trouble
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        if transport is None and loopback:
            # A loopback endpoint is never reached through HTTP(S)_PROXY/ALL_PROXY: the
            # proxy would see the token, and it is not where the workspace runs. An
            # explicit transport is what keeps httpx from reading proxies from the
            # environment, while SSL_CERT_FILE (a local workspace over https) still applies.
            transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=True)
        self._transport = transport  # the run reader's requests take the same way
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(request_timeout),
            transport=transport,
            headers={"User-Agent": f"amlwait/{__version__}"},
            limits=limits,
            follow_redirects=False,
        )
        self._requests = 0
        self._failing_since: float | None = None
        self.last_problem: str | None = None
        """The latest transient failure still being retried (``None`` once one succeeds):
        what a caller that gives up on a read can say it was waiting for."""
        self._failures = 0

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
        try:
            parts = urlsplit(url)
            origin = (parts.scheme, parts.netloc.lower())
        except ValueError:
            origin = ("", "")
        if origin != self._origin:
            raise ServiceError(
                f"the service sent a nextLink to another host "
                f"({_printable(origin[0])}://{_printable(origin[1])}); "
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
        """:meth:`_request` for callers that read the answer themselves (submit's code
        registrar): the answer in ``ok_statuses`` (or 404), whole, as an httpx Response."""
        answer = await self._request(
            method, url, _as_is, params=params, json=json, job=job, ok_statuses=ok_statuses
        )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

    async def _request(
        self,
        method: str,
        url: str,
        read: Callable[[Answer], T],
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        job: str | None = None,
        ok_statuses: tuple[int, ...] = (200,),
    ) -> T:
        """Send until an answer in ``ok_statuses`` (or 404) that ``read`` accepts, and
        return what ``read`` made of it. ``read`` raising :class:`MalformedAnswer` counts
        as a transient failure."""
        refreshed = False
        attempt = 1
        what = f"{method} {job or urlsplit(url).path}"
        while True:
            await self.throttle.acquire()
            if self.clock.now() >= read_deadline.get():
                raise DeadlineReached
            token = await self.credential.token()
            headers = {
                "Authorization": f"Bearer {token}",
                "x-ms-client-request-id": str(uuid.uuid4()),
            }
            self._requests += 1
            retry_after: float | None = None
            asked_retry_after = ""
            try:
                answer = await self._exchange(method, url, params, json, headers)
            except (httpx.RequestError, asyncio.TimeoutError) as error:
                text = scrub(str(error), token) if isinstance(error, httpx.HTTPError) else ""
                problem = type(error).__name__ + (f" ({_printable(text)[:200]})" if text else "")
                if isinstance(error, asyncio.TimeoutError):
                    problem = f"no complete answer within {self.request_timeout:g} s"
            else:
                remaining = answer.headers.get(_REMAINING_READS)
                if remaining is not None and remaining.isdigit():
                    self.throttle.budget.note_remaining(int(remaining))
                status = answer.status
                if status in ok_statuses or status == 404:
                    try:
                        value = read(answer)
                    except MalformedAnswer as error:
                        problem = f"an answer that is not ARM's JSON: {error}"
                    else:
                        self._recovered(what)
                        return value
                elif status == 401:
                    if not refreshed and self.credential.invalidate():
                        refreshed = True
                        continue
                    raise AuthenticationError(
                        f"Azure refused the token for {what} (401 {_error_text(answer, token)}); "
                        "check the credential (az login / service connection / "
                        "AMLWAIT_ACCESS_TOKEN)"
                    )
                elif status == 403:
                    raise AuthenticationError(
                        f"no permission for {what} (403 {_error_text(answer, token)}); the "
                        "identity needs a role that can read (and cancel) jobs in this workspace"
                    )
                elif is_retryable_status(status):
                    asked_retry_after = answer.headers.get("retry-after") or ""
                    retry_after = parse_retry_after(asked_retry_after or None)
                    if retry_after is not None and status in (429, 503):
                        self.throttle.budget.hold_until(self.clock.now() + retry_after)
                    problem = f"{status} {_error_text(answer, token)}"
                else:
                    raise ServiceError(
                        f"{what} was refused: {status} {_error_text(answer, token)}",
                        status_code=status,
                        job=job,
                    )
            self.last_problem = scrub(f"{what}: {problem}")
            await self._backoff(attempt, retry_after, what, problem, asked_retry_after)
            attempt += 1

    async def _exchange(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        json: Any,
        headers: Mapping[str, str],
    ) -> Answer:
        """One request and its whole answer, within ``request_timeout`` and the time left
        before the deadline (:class:`DeadlineReached` when that is what cut it short)."""
        limit = min(self.request_timeout, read_deadline.get() - self.clock.now())
        request = self._client.build_request(method, url, params=params, json=json, headers=headers)
        try:
            return await asyncio.wait_for(self._read_whole(request), limit)
        except asyncio.TimeoutError:
            if limit < self.request_timeout:
                raise DeadlineReached from None
            raise

    async def _read_whole(self, request: httpx.Request) -> Answer:
        response = await self._client.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise httpx.DecodingError(
                        f"the answer is longer than {MAX_ANSWER_BYTES} bytes", request=request
                    )
        finally:
            await response.aclose()
        return Answer(response.status_code, response.reason_phrase, response.headers, bytes(body))

    async def _backoff(
        self,
        attempt: int,
        retry_after: float | None,
        what: str,
        problem: str,
        asked_retry_after: str = "",
    ) -> None:
        deadline = read_deadline.get()
        bounded = math.isinf(deadline)
        if bounded and attempt >= self.retry.attempts:
            raise ServiceError(
                f"{what} kept failing: {problem.rstrip('.')} ({attempt} attempts); "
                f"is {self.endpoint} reachable and healthy?"
            )
        delay = self.retry.delay(attempt + 1, retry_after)
        if self._failing_since is None:
            self._failing_since = self.clock.now()
            until = (
                f"up to {self.retry.attempts} attempts"
                if bounded
                else f"until the deadline {_iso(deadline)}"
            )
            waiting = f"next try in {delay:.0f} s"
            if asked_retry_after and retry_after is not None:
                waiting += f" (the server's Retry-After {_printable(asked_retry_after)[:20]}"
                if retry_after >= MAX_RETRY_AFTER:
                    waiting += f", capped at {MAX_RETRY_AFTER:.0f} s"
                waiting += ")"
            self._notify(f"retrying {what}: {problem.rstrip('.')}; {waiting}; retrying {until}")
        self._failures += 1
        await self.throttle.pause(delay)

    def _recovered(self, what: str) -> None:
        if self._failing_since is None:
            return
        seconds = self.clock.now() - self._failing_since
        self._notify(
            f"{self.endpoint} answers again ({what}) after {self._failures} failed "
            f"requests over {seconds:.0f} s"
        )
        self._failing_since, self._failures = None, 0
        self.last_problem = None

    def _notify(self, line: str) -> None:
        if self.on_trouble is not None:
            self.on_trouble(scrub(line))

    async def send(
        self, method: str, url: str, *, params: Mapping[str, str] | None = None, json: Any = None
    ) -> httpx.Response:
        """One request to an Azure ML endpoint (the workspace resource, its MLflow
        tracking API) with this source's token, budget and retries; 200 or 404 is
        returned, anything else raises as for a job read."""
        return await self._send(method, url, params=params, json=json)

    # -- the seam -----------------------------------------------------------------------

    async def get_job(self, ref: JobRef) -> JobSnapshot | None:
        body = await self.get_job_definition(ref)
        return None if body is None else parse_job(body)

    async def list_jobs_by_tag(self, workspace: WorkspaceRef, tag: str) -> list[JobSnapshot]:
        """Every job with the tag, page by page (see the module's listing bounds)."""
        jobs: list[JobSnapshot] = []
        params: dict[str, str] | None = {
            "api-version": self.api_version,
            "tag": tag,
            "listViewType": "All",
        }
        url: str | None = str(httpx.URL(self._jobs_url(workspace), params=params))
        fetched: set[str] = set()
        while url is not None:
            if len(fetched) >= MAX_LISTING_PAGES:
                raise ListingError(
                    f"the listing of {workspace} by tag {tag} passed {MAX_LISTING_PAGES} pages; "
                    "its jobs are read one by one instead"
                )
            if self.clock.now() >= read_deadline.get():
                raise DeadlineReached
            fetched.add(url)
            page = await self._request("GET", url, _listing_reader(workspace))
            jobs.extend(page.jobs)
            if len(jobs) > MAX_LISTED_JOBS:
                raise ListingError(
                    f"the listing of {workspace} by tag {tag} passed {MAX_LISTED_JOBS} jobs; "
                    "its jobs are read one by one instead"
                )
            url = page.next_link  # followed verbatim
            if url is not None:
                self._check_same_origin(url)
                if url in fetched:
                    raise ListingError(
                        f"the listing of {workspace} by tag {tag} sent a nextLink to a page "
                        f"it had already sent (after {len(fetched)} pages); its jobs are "
                        "read one by one instead"
                    )
        return jobs

    async def cancel_job(self, ref: JobRef) -> None:
        found = await self._request(
            "POST",
            self._jobs_url(ref.workspace, ref.name) + "/cancel",
            _found_in(ref.workspace),
            params={"api-version": self.api_version},
            job=ref.name,
            ok_statuses=(200, 202, 204),
        )
        if not found:
            raise ServiceError(
                f"cannot cancel {ref.name}: not found", status_code=404, job=ref.name
            )

    async def put_job(self, ref: JobRef, properties: Mapping[str, Any]) -> JobSnapshot:
        """Create (or update) a job: ``PUT …/jobs/{name}`` with ``{"properties": …}``."""
        snapshot = await self._request(
            "PUT",
            self._jobs_url(ref.workspace, ref.name),
            _job_or_none_in(ref.workspace),
            params={"api-version": self.api_version},
            json={"properties": dict(properties)},
            job=ref.name,
            ok_statuses=(200, 201),
        )
        if snapshot is None:
            raise ServiceError(
                f"cannot create {ref.name}: workspace {ref.workspace} not found",
                status_code=404,
                job=ref.name,
            )
        return snapshot

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
        """The job's whole ARM body (for re-submission), or ``None`` when not found.
        A body that is not a job as ARM documents it is retried like a 5xx."""
        return await self._request(
            "GET",
            self._jobs_url(ref.workspace, ref.name),
            _definition_or_none_in(ref.workspace),
            params={"api-version": self.api_version},
            job=ref.name,
        )


# -- what each request makes of its answer (404 included) -------------------------------------
# A 404 that says the workspace (or its resource group, or subscription) does not exist is
# an InputError (exit 2); any other 404 means the job.


def _as_is(answer: Answer) -> Answer:
    return answer


def _check_workspace(answer: Answer, workspace: WorkspaceRef) -> None:
    missing = missing_workspace_error(answer, workspace)
    if missing is not None:
        raise missing


def _found_in(workspace: WorkspaceRef) -> Callable[[Answer], bool]:
    def read(answer: Answer) -> bool:
        _check_workspace(answer, workspace)
        return answer.status != 404

    return read


def _job_or_none_in(workspace: WorkspaceRef) -> Callable[[Answer], JobSnapshot | None]:
    def read(answer: Answer) -> JobSnapshot | None:
        _check_workspace(answer, workspace)
        return None if answer.status == 404 else parse_job(answer.json_object())

    return read


def _definition_or_none_in(
    workspace: WorkspaceRef,
) -> Callable[[Answer], dict[str, Any] | None]:
    def read(answer: Answer) -> dict[str, Any] | None:
        _check_workspace(answer, workspace)
        if answer.status == 404:
            return None
        body = answer.json_object()
        parse_job(body)  # the shape is checked here, where a bad answer is retried
        return body

    return read


def _listing_reader(workspace: WorkspaceRef) -> Callable[[Answer], _Page]:
    def read(answer: Answer) -> _Page:
        _check_workspace(answer, workspace)
        if answer.status == 404:
            raise ServiceError(
                f"workspace {workspace} was not found (404 {_error_text(answer)}); "
                "check --subscription, --resource-group and --workspace-name"
            )
        return _parse_page(answer)

    return read
