"""A pipeline job's steps, read from run history the documented way.

Azure ML answers an ARM ``GET`` of a pipeline step with ``"properties": null``; the steps
and their status live in run history (AZURE-FACTS §1). azure-ai-ml lists them with
``jobs.list(parent_job_name=…)``, which calls run history's ``GET {history}/history/v1.0
/subscriptions/…/workspaces/{ws}/runs/{runId}/children`` (``RunOperations.
get_run_children`` → ``_restclient/runhistory`` ``get_child``; answer ``PaginatedRunList``
``{"value": [Run…], "continuationToken", "nextLink"}``). The ``history`` base comes from
the workspace: ``GET WS`` → ``properties.discoveryUrl`` → its ``history`` key (else
``api``), as azure-ai-ml's ``_get_workspace_url`` finds it.

Requests, all through the ARM job source (its token — azure-ai-ml uses the resource
manager's scope for run history too —, retries, time limits and request count): ``GET WS``,
``GET {discoveryUrl}``, then ``…/children`` and each ``nextLink`` (same host only; at most
``MAX_PAGES`` pages). The token goes only to https or loopback URLs. Anything else is a
:class:`~amlwait.errors.ServiceError` of one line.

Once the workspace's own discovery reader (``azureml/tracking.py``) is in, this module
should take its endpoints from it rather than discover them itself.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.pipeline import StepRun
from amlwait.errors import ServiceError
from amlwait.redact import is_loopback_url

MAX_PAGES = 100
NODE_ID_PROPERTY = "azureml.nodeid"
__all__ = ["StepRun", "history_base", "read_steps", "step_of"]


class ArmSender(Protocol):
    endpoint: str
    api_version: str

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        json: Any = None,
        job: str | None = None,
        ok_statuses: tuple[int, ...] = (200,),
    ) -> httpx.Response: ...


def step_of(run: dict[str, Any]) -> StepRun:
    """A run history ``Run`` as a :class:`StepRun`."""
    properties = run.get("properties") or {}
    error = ((run.get("error") or {}).get("error") or {}) if isinstance(run, dict) else {}
    return StepRun(
        run_id=str(run.get("runId") or run.get("name") or ""),
        display_name=str(run.get("displayName") or run.get("runId") or ""),
        node=properties.get(NODE_ID_PROPERTY) if isinstance(properties, dict) else None,
        status=str(run.get("status") or "Unknown"),
        reason=error.get("message") if isinstance(error, dict) else None,
        created=run.get("createdUtc") or run.get("createdTimeUtc"),
        started=run.get("startTimeUtc"),
        ended=run.get("endTimeUtc"),
    )


def _safe_for_token(url: str) -> bool:
    return url.lower().startswith("https://") or is_loopback_url(url)


async def _get_json(source: ArmSender, url: str, what: str, **params: str) -> dict[str, Any]:
    if not _safe_for_token(url):
        raise ServiceError(f"{what}: {urlsplit(url).netloc} is not https; refusing to send a token")
    response = await source._send("GET", url, params=params or None, job=what)
    if response.status_code != 200:
        raise ServiceError(f"{what}: {response.status_code} {response.reason_phrase}")
    try:
        body = response.json()
    except ValueError:
        raise ServiceError(f"{what}: the answer is not JSON") from None
    if not isinstance(body, dict):
        raise ServiceError(f"{what}: the answer is not a JSON object")
    return body


async def history_base(source: ArmSender, workspace: WorkspaceRef) -> str:
    """The run-history base URL of ``workspace`` (from its discovery document)."""
    resource = await _get_json(
        source,
        source.endpoint + workspace.arm_path,
        f"workspace {workspace.workspace}",
        **{"api-version": source.api_version},
    )
    discovery_url = (resource.get("properties") or {}).get("discoveryUrl")
    if not isinstance(discovery_url, str) or not discovery_url:
        raise ServiceError(f"workspace {workspace.workspace} has no discoveryUrl")
    discovery = await _get_json(source, discovery_url, "the workspace's discovery document")
    base = discovery.get("history") or discovery.get("api")
    if not isinstance(base, str) or not base:
        raise ServiceError("the workspace's discovery document names no history endpoint")
    return base.rstrip("/")


async def read_steps(source: ArmSender, pipeline: JobRef) -> list[StepRun]:
    """Every step of ``pipeline``, as run history lists them."""
    base = await history_base(source, pipeline.workspace)
    url: str | None = (
        f"{base}/history/v1.0{pipeline.workspace.arm_path}/runs/{quote(pipeline.name, safe='')}"
        "/children"
    )
    origin = urlsplit(base).netloc.lower()
    steps: list[StepRun] = []
    for _ in range(MAX_PAGES):
        if url is None:
            return steps
        page = await _get_json(source, url, f"the steps of {pipeline.name}")
        steps.extend(step_of(run) for run in page.get("value") or [] if isinstance(run, dict))
        next_link = page.get("nextLink")
        if next_link and urlsplit(str(next_link)).netloc.lower() != origin:
            raise ServiceError(f"the steps of {pipeline.name}: a nextLink to another host")
        url = str(next_link) if next_link else None
    raise ServiceError(f"the steps of {pipeline.name}: more than {MAX_PAGES} pages")
