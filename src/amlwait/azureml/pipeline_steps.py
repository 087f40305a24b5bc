"""A pipeline job's steps, read from run history the documented way.

Azure ML answers an ARM ``GET`` of a pipeline step with ``"properties": null``; the steps
and their status live in run history (AZURE-FACTS §1). azure-ai-ml lists them with
``jobs.list(parent_job_name=…)``, which calls run history's ``GET {history}/history/v1.0
/subscriptions/…/workspaces/{ws}/runs/{runId}/children`` (``RunOperations.
get_run_children`` → ``_restclient/runhistory`` ``get_child``; answer ``PaginatedRunList``
``{"value": [Run…], "continuationToken", "nextLink"}``).

The ``history`` base is found as every run-history read of amlwait finds it
(:mod:`amlwait.azureml.tracking`: ``GET WS`` → ``discoveryUrl`` → its ``history`` key),
and the requests go through its :class:`~amlwait.azureml.tracking.DataPlaneHttp` (the ARM
token, https or loopback only, time-limited, retried once). Requests: ``GET WS``, ``GET
{discoveryUrl}``, ``…/children`` and each ``nextLink`` (same host only; at most
``MAX_PAGES`` pages). A read that does not work raises
:class:`~amlwait.azureml.tracking.TrackingError` saying what, in a few words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from amlwait.azureml.tracking import ServiceRunReader, TrackingError
from amlwait.core.jobs import JobRef
from amlwait.core.pipeline import StepRun

if TYPE_CHECKING:
    from amlwait.azureml.arm import ArmJobSource

MAX_PAGES = 100
NODE_ID_PROPERTY = "azureml.nodeid"
__all__ = ["StepRun", "read_steps", "step_of"]


def step_of(run: dict[str, Any]) -> StepRun:
    """A run history ``Run`` as a :class:`StepRun`."""
    properties = run.get("properties") or {}
    error = (run.get("error") or {}).get("error") or {}
    return StepRun(
        run_id=str(run.get("runId") or run.get("name") or ""),
        display_name=str(run.get("displayName") or run.get("runId") or ""),
        node=properties.get(NODE_ID_PROPERTY) if isinstance(properties, dict) else None,
        status=str(run.get("status") or "Unknown"),
        reason=error.get("message") if isinstance(error, dict) else None,
        created=run.get("createdUtc") or run.get("createdTimeUtc"),
        started=run.get("startTimeUtc"),
        ended=run.get("endTimeUtc"),
        error_code=error.get("code") if isinstance(error, dict) else None,
    )


async def read_steps(arm: ArmJobSource, pipeline: JobRef) -> tuple[list[StepRun], int]:
    """Every step of ``pipeline`` as run history lists them, and the data-plane requests
    it took (the ARM workspace GET is counted by ``arm``)."""
    reader = ServiceRunReader(arm, clock=arm.clock, transport=arm._transport)
    try:
        client = await reader.client(pipeline.workspace)
        base = client.endpoints.history
        if base is None:
            raise TrackingError("run history was not discovered for this workspace")
        url: str | None = (
            f"{base}/history/v1.0{pipeline.workspace.arm_path}"
            f"/runs/{quote(pipeline.name, safe='')}/children"
        )
        what = f"the steps of {pipeline.name}"
        steps: list[StepRun] = []
        for _ in range(MAX_PAGES):
            if url is None:
                return steps, reader.requests_sent
            page = await client.http.send("GET", url, what=what)
            if not isinstance(page, dict):
                raise TrackingError(f"{what}: the answer is not a JSON object")
            runs = page.get("value") or []
            steps.extend(step_of(run) for run in runs if isinstance(run, dict))
            next_link = page.get("nextLink")
            if next_link and urlsplit(str(next_link)).netloc != urlsplit(base).netloc:
                raise TrackingError(f"{what}: a nextLink to another host")
            url = str(next_link) if next_link else None
        raise TrackingError(f"{what}: more than {MAX_PAGES} pages")
    finally:
        await reader.aclose()
