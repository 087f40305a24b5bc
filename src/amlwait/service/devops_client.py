"""The Azure DevOps plan API a server task reports back to (``waitForCompletion: true``).

Under ``{PlanUrl}{ProjectId}/_apis/distributedtask/hubs/{HubName}/plans/{PlanId}``:

- ``POST events?api-version=2.0-preview.1`` ``{"name": "TaskCompleted", "taskId", "jobId",
  "result"}`` ends the task;
- ``POST timelines/{TimelineId}/records/{JobId}/feed?api-version=4.1`` ``{"value": [lines],
  "count": N}`` adds lines to the live console;
- ``POST logs`` ``{"path": "logs\\<TaskInstanceId>"}`` creates a log (its ``id`` comes back),
  ``POST logs/{id}`` appends text, and ``PATCH timelines/{TimelineId}/records`` attaches it
  to the task.

Every request carries ``Authorization: Basic base64(":" + AuthToken)``. The token is never
logged or put into an error message, and nothing is sent to a ``PlanUrl`` that is not
allowed (checked again here, whatever the caller checked before).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from amlwait import __version__
from amlwait.core.retry import is_retryable_status
from amlwait.redact import REDACTOR, is_loopback_url
from amlwait.service.models import Callback, plan_url_allowed

EVENTS_API_VERSION = "2.0-preview.1"
FEED_API_VERSION = "4.1"
LOGS_API_VERSION = "4.1"
MAX_LINE_CHARS = 1024


class DevOpsError(Exception):
    """A plan API call did not succeed; ``retryable`` when trying later may help."""

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


def basic_auth(token: str) -> str:
    return "Basic " + base64.b64encode(f":{token}".encode()).decode("ascii")


def feed_line(text: str, at: float) -> str:
    """``<ISO time> text`` on one line of at most 1,024 characters."""
    stamp = dt.datetime.fromtimestamp(at, tz=dt.timezone.utc).isoformat(timespec="seconds")
    line = f"{stamp.replace('+00:00', 'Z')} {' '.join(text.split())}"
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"


class DevOpsClient:
    """Sends plan events, feed lines and logs; one instance per process."""

    def __init__(
        self,
        allowed_orgs: Sequence[str],
        *,
        timeout: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.allowed_orgs = tuple(allowed_orgs)
        common: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout),
            "headers": {"User-Agent": f"amlwait-service/{__version__}"},
            "follow_redirects": False,
        }
        self._client = httpx.AsyncClient(transport=transport, **common)
        # Loopback organizations (tests, a local proxy of one's own) are reached directly:
        # HTTP(S)_PROXY never sees their token.
        self._direct = httpx.AsyncClient(transport=transport, trust_env=False, **common)
        self.requests_sent = 0

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._direct.aclose()

    def _plan(self, callback: Callback) -> str:
        if not plan_url_allowed(callback.plan_url, self.allowed_orgs):
            raise DevOpsError("PlanUrl is not an allowed organization URL", retryable=False)
        base = callback.plan_url if callback.plan_url.endswith("/") else callback.plan_url + "/"
        return (
            f"{base}{quote(callback.project_id, safe='')}/_apis/distributedtask/hubs/"
            f"{quote(callback.hub_name, safe='')}/plans/{quote(callback.plan_id, safe='')}"
        )

    async def _send(
        self,
        method: str,
        url: str,
        token: str,
        *,
        what: str,
        json: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        REDACTOR.register(token)  # forgotten by the outbox when the wait's last message is done
        headers = {"Authorization": basic_auth(token), "Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        self.requests_sent += 1
        try:
            client = self._direct if is_loopback_url(url) else self._client
            response = await client.request(
                method, url, json=json, content=content, headers=headers
            )
        except httpx.TransportError as error:
            raise DevOpsError(f"{what}: {type(error).__name__}", retryable=True) from None
        if response.is_success:
            return response
        status = response.status_code
        raise DevOpsError(
            f"{what}: Azure DevOps answered {status}",
            retryable=is_retryable_status(status) or status in (401, 403, 404),
            status_code=status,
        )

    async def task_completed(self, callback: Callback, token: str, result: str) -> None:
        """End the task with ``result`` (``succeeded`` or ``failed``)."""
        await self._send(
            "POST",
            f"{self._plan(callback)}/events?api-version={EVENTS_API_VERSION}",
            token,
            what="TaskCompleted",
            json={
                "name": "TaskCompleted",
                "taskId": callback.task_instance_id,
                "jobId": callback.job_id,
                "result": result,
            },
        )

    async def feed(self, callback: Callback, token: str, lines: Sequence[str]) -> None:
        """Append ``lines`` (already time-stamped) to the task's live console."""
        if not lines:
            return
        url = (
            f"{self._plan(callback)}/timelines/{quote(callback.timeline_id, safe='')}"
            f"/records/{quote(callback.job_id, safe='')}/feed?api-version={FEED_API_VERSION}"
        )
        value = [line[:MAX_LINE_CHARS] for line in lines]
        await self._send(
            "POST", url, token, what="feed", json={"value": value, "count": len(value)}
        )

    async def upload_log(self, callback: Callback, token: str, text: str) -> None:
        """Create the task's log, write ``text`` to it and attach it to the task's record."""
        plan = self._plan(callback)
        created = await self._send(
            "POST",
            f"{plan}/logs?api-version={LOGS_API_VERSION}",
            token,
            what="create log",
            json={"path": f"logs\\{callback.task_instance_id}"},
        )
        try:
            log_id = int(created.json()["id"])
        except (ValueError, KeyError, TypeError):
            raise DevOpsError("create log: no log id in the answer", retryable=True) from None
        await self._send(
            "POST",
            f"{plan}/logs/{log_id}?api-version={LOGS_API_VERSION}",
            token,
            what="write log",
            content=text.encode("utf-8"),
            content_type="application/octet-stream",
        )
        record = {"id": callback.task_instance_id, "log": {"id": log_id}}
        await self._send(
            "PATCH",
            f"{plan}/timelines/{quote(callback.timeline_id, safe='')}/records"
            f"?api-version={LOGS_API_VERSION}",
            token,
            what="attach log",
            json={"value": [record], "count": 1},
        )
