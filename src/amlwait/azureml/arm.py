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
import math
import os
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from amlwait.azureml.answers import (
    Answer,
    MalformedAnswer,
    as_is,
    definition_or_none_in,
    error_text,
    found_in,
    job_or_none_in,
    listing_reader,
    missing_workspace_error,
    parse_job,
    printable,
)
from amlwait.azureml.credentials import TokenProvider, default_token_provider, is_loopback
from amlwait.azureml.http import amlwait_client
from amlwait.core.budget import RequestBudget
from amlwait.core.clock import Clock, SystemClock
from amlwait.core.jobs import JobRef, JobSnapshot, WorkspaceRef
from amlwait.core.pipeline import StepRun
from amlwait.core.retry import MAX_RETRY_AFTER, RetryPolicy, is_retryable_status, parse_retry_after
from amlwait.core.source import RunReader
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


def _iso(moment: float) -> str:
    stamp = _dt.datetime.fromtimestamp(moment, tz=_dt.timezone.utc)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def _refusal(answer: Answer, what: str, token: str, job: str | None) -> Exception:
    """The final error for an answer no retry can change: a 401 after the one token
    refresh, a 403, or any other status ARM refuses for good."""
    if answer.status == 401:
        return AuthenticationError(
            f"Azure refused the token for {what} (401 {error_text(answer, token)}); "
            "check the credential (az login / service connection / AMLWAIT_ACCESS_TOKEN)"
        )
    if answer.status == 403:
        return AuthenticationError(
            f"no permission for {what} (403 {error_text(answer, token)}); the "
            "identity needs a role that can read (and cancel) jobs in this workspace"
        )
    return ServiceError(
        f"{what} was refused: {answer.status} {error_text(answer, token)}",
        status_code=answer.status,
        job=job,
    )


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
        self._client = amlwait_client(request_timeout, transport=transport, limits=limits)
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
                f"({printable(origin[0])}://{printable(origin[1])}); "
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
            method, url, as_is, params=params, json=json, job=job, ok_statuses=ok_statuses
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
                problem = self._exchange_problem(error, token)
            else:
                self._note_remaining_reads(answer)
                status = answer.status
                if status in ok_statuses or status == 404:
                    try:
                        value = read(answer)
                    except MalformedAnswer as error:
                        problem = f"an answer that is not ARM's JSON: {error}"
                    else:
                        self._recovered(what)
                        return value
                elif status == 401 and not refreshed and self.credential.invalidate():
                    refreshed = True
                    continue
                elif is_retryable_status(status):
                    asked_retry_after = answer.headers.get("retry-after") or ""
                    retry_after = parse_retry_after(asked_retry_after or None)
                    if retry_after is not None and status in (429, 503):
                        self.throttle.budget.hold_until(self.clock.now() + retry_after)
                    problem = f"{status} {error_text(answer, token)}"
                else:
                    raise _refusal(answer, what, token, job)
            self.last_problem = scrub(f"{what}: {problem}")
            await self._backoff(attempt, retry_after, what, problem, asked_retry_after)
            attempt += 1

    def _exchange_problem(self, error: Exception, token: str) -> str:
        """One scrubbed line for a request that got no whole answer."""
        if isinstance(error, asyncio.TimeoutError):
            return f"no complete answer within {self.request_timeout:g} s"
        text = scrub(str(error), token) if isinstance(error, httpx.HTTPError) else ""
        return type(error).__name__ + (f" ({printable(text)[:200]})" if text else "")

    def _note_remaining_reads(self, answer: Answer) -> None:
        remaining = answer.headers.get(_REMAINING_READS)
        if remaining is not None and remaining.isdigit():
            self.throttle.budget.note_remaining(int(remaining))

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
                waiting += f" (the server's Retry-After {printable(asked_retry_after)[:20]}"
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
            page = await self._request("GET", url, listing_reader(workspace))
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
            found_in(ref.workspace),
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
            job_or_none_in(ref.workspace),
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

    async def pipeline_steps(self, pipeline: JobRef) -> tuple[list[StepRun], int]:
        """The steps of pipeline job ``pipeline`` as run history lists them, and the
        data-plane requests it took (:func:`amlwait.azureml.pipeline_steps.read_steps`)."""
        from amlwait.azureml.pipeline_steps import read_steps

        return await read_steps(self, pipeline)

    async def get_job_definition(self, ref: JobRef) -> dict[str, Any] | None:
        """The job's whole ARM body (for re-submission), or ``None`` when not found.
        A body that is not a job as ARM documents it is retried like a 5xx."""
        return await self._request(
            "GET",
            self._jobs_url(ref.workspace, ref.name),
            definition_or_none_in(ref.workspace),
            params={"api-version": self.api_version},
            job=ref.name,
        )


# -- what each request makes of its answer (404 included) -------------------------------------
