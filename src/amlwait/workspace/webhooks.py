"""Azure DevOps webhooks on jobs: what ``AzureMLJobWaitTask@1`` (and ``InvokeRESTAPI@1`` in
Microsoft's documented example) registers, and the TaskCompleted the workspace sends back.

**What rests on what.** The shipped spec (2024-04-01 ``mfe.json``) gives ``JobBase.
notificationSetting.webhooks``: a map of user-chosen names to ``Webhook`` (``webhookType``
required, discriminator; ``AzureDevOps`` its one value; ``eventType`` optional), mutable
on create, read *and update* (``x-ms-mutability``). The spec's ``AzureDevOpsWebhook`` has
no further fields, and the 2024-04-01 spec has no PATCH operation on jobs. The rest comes
from Azure ML's documented example ("Use Azure Pipelines with Azure Machine Learning",
``how-to-devops-machine-learning``, AZURE-FACTS §2): ``PATCH WS/jobs/NAME?api-version=
2024-04-01`` with ``{"Properties": {"NotificationSetting": {"Webhooks": {"ADO_Webhook_…":
{"WebhookType": "AzureDevOps", "EventType": "RunTerminated", "PlanUri", "ProjectId",
"HubName", "PlanId", "JobId", "TimelineId", "TaskInstanceId", "AuthToken"}}}}}`` — the
PATCH itself, ``EventType`` ``RunTerminated`` and the eight plan fields. Field names are
matched case-insensitively (the example writes them PascalCase, the spec camelCase) and
stored camelCase. What Azure ML then sends is the Azure DevOps callback protocol for
server tasks (``servertaskauthoring.md``): ``POST {PlanUri}{ProjectId}/_apis/
distributedtask/hubs/{HubName}/plans/{PlanId}/events?api-version=2.0-preview.1`` with
``{"name": "TaskCompleted", "taskId": TaskInstanceId, "jobId": JobId, "result"}`` and
``Authorization: Basic base64(":" + AuthToken)``; ``result`` is ``succeeded`` for
Completed, ``failed`` for Failed, ``canceled`` for Canceled (*how Azure ML words a
canceled job's result is not documented*).

**Here.** ``PATCH WS/jobs/NAME`` accepts only ``properties.notificationSetting.webhooks``
(anything else is a 400 naming it) and merges the named webhooks into the job's; a PUT
creating a job keeps the ones it carries. The ``authToken`` is kept for the callback but
never shown: a job's GET leaves it out, and no log line carries it. When the job (a
pipeline job too) reaches a terminal status, the runner sends each webhook's
TaskCompleted once: to a loopback ``planUri`` only (:func:`amlwait.redact.is_loopback_url`;
any other is recorded as not sent — the local workspace never calls out), with a
``CALL_TIMEOUT_SECONDS`` limit, retried on a transport error or a non-2xx answer up to
``MAX_ATTEMPTS`` times ``RETRY_SECONDS`` apart, then given up (recorded). A delivery is
recorded after the answer: a workspace stopped between the two sends it again on restart.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from amlwait.core.status import JobStatus
from amlwait.redact import is_loopback_url
from amlwait.workspace.errors import ArmError

WEBHOOK_TYPE = "AzureDevOps"
FIELDS = (
    "webhookType",
    "eventType",
    "planUri",
    "projectId",
    "hubName",
    "planId",
    "jobId",
    "timelineId",
    "taskInstanceId",
    "authToken",
)
SECRET_FIELD = "authToken"
PLAN_FIELDS = ("planUri", "projectId", "hubName", "planId", "jobId", "taskInstanceId")
EVENTS_API_VERSION = "2.0-preview.1"
CALL_TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 5
RETRY_SECONDS = 2.0
RESULTS = {
    JobStatus.COMPLETED.value: "succeeded",
    JobStatus.FAILED.value: "failed",
    JobStatus.CANCELED.value: "canceled",
}
_BY_LOWER = {name.lower(): name for name in FIELDS}


def _bad(message: str) -> ArmError:
    return ArmError(400, "UserError", message)


def _field(mapping: Mapping[str, Any], name: str) -> Any:
    """``mapping[name]`` matched case-insensitively (ARM's JSON names are)."""
    for key, value in mapping.items():
        if key.lower() == name.lower():
            return value
    return None


def parse_webhooks(value: Any, where: str) -> dict[str, dict[str, str]]:
    """``notificationSetting.webhooks`` validated and normalised (camelCase names)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(f"{where} must be an object of webhooks.")
    webhooks: dict[str, dict[str, str]] = {}
    for name, webhook in value.items():
        if not isinstance(webhook, Mapping):
            raise _bad(f"{where}.{name} must be an object.")
        normalised: dict[str, str] = {}
        for key, item in webhook.items():
            known = _BY_LOWER.get(key.lower())
            if known is None:
                raise _bad(f"{where}.{name}.{key} is not a field of an Azure DevOps webhook.")
            if not isinstance(item, str):
                raise _bad(f"{where}.{name}.{key} must be a string.")
            normalised[known] = item
        if normalised.get("webhookType") != WEBHOOK_TYPE:
            raise _bad(f"{where}.{name}.webhookType must be '{WEBHOOK_TYPE}'.")
        webhooks[str(name)] = normalised
    return webhooks


def parse_patch_body(raw: bytes) -> dict[str, dict[str, str]]:
    """The webhooks a ``PATCH WS/jobs/NAME`` sets, or a 400 :class:`ArmError`."""
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArmError(
            400, "InvalidRequestContent", f"The request body is not valid JSON: {exc}."
        ) from None
    properties = _field(body, "properties") if isinstance(body, Mapping) else None
    if not isinstance(properties, Mapping):
        raise _bad("The request body must have a 'properties' object.")
    for key in properties:
        if key.lower() != "notificationsetting":
            raise _bad(
                f"properties.{key} cannot be patched here; only "
                "properties.notificationSetting.webhooks can."
            )
    setting = _field(properties, "notificationSetting")
    if not isinstance(setting, Mapping):
        raise _bad("properties.notificationSetting must be an object.")
    for key in setting:
        if key.lower() != "webhooks":
            raise _bad(
                f"properties.notificationSetting.{key} cannot be patched here; only webhooks can."
            )
    return parse_webhooks(_field(setting, "webhooks"), "properties.notificationSetting.webhooks")


def webhooks_of(properties: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    setting = properties.get("notificationSetting") or {}
    found = setting.get("webhooks") if isinstance(setting, Mapping) else None
    return dict(found) if isinstance(found, Mapping) else {}


def with_webhooks(
    properties: Mapping[str, Any], webhooks: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """``properties`` with ``webhooks`` merged into its own (same name: replaced)."""
    updated = dict(properties)
    setting = dict(updated.get("notificationSetting") or {})
    setting["webhooks"] = {**webhooks_of(properties), **{k: dict(v) for k, v in webhooks.items()}}
    updated["notificationSetting"] = setting
    return updated


def without_secrets(properties: Mapping[str, Any]) -> dict[str, Any]:
    """``properties`` as a GET shows them: each webhook without its ``authToken``."""
    webhooks = webhooks_of(properties)
    if not webhooks:
        return dict(properties)
    shown = dict(properties)
    setting = dict(shown.get("notificationSetting") or {})
    setting["webhooks"] = {
        name: {k: v for k, v in hook.items() if k != SECRET_FIELD}
        for name, hook in webhooks.items()
    }
    shown["notificationSetting"] = setting
    return shown


@dataclass(frozen=True)
class Completion:
    """The TaskCompleted request one webhook asks for; ``url`` is ``None`` when the
    webhook lacks a plan field (recorded as not sent)."""

    url: str | None
    headers: Mapping[str, str]
    body: Mapping[str, str]
    missing: tuple[str, ...] = ()


def completion_for(webhook: Mapping[str, str], status: str) -> Completion:
    """The TaskCompleted of ``webhook`` for a job that ended ``status``."""
    missing = tuple(f for f in PLAN_FIELDS if not webhook.get(f))
    body = {
        "name": "TaskCompleted",
        "taskId": webhook.get("taskInstanceId", ""),
        "jobId": webhook.get("jobId", ""),
        "result": RESULTS.get(status, "failed"),
    }
    token = webhook.get(SECRET_FIELD, "")
    headers = {
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f":{token}".encode()).decode("ascii"),
    }
    if missing:
        return Completion(None, headers, body, missing)
    plan = webhook["planUri"].rstrip("/") + "/"
    url = (
        f"{plan}{webhook['projectId']}/_apis/distributedtask/hubs/{webhook['hubName']}"
        f"/plans/{webhook['planId']}/events?api-version={EVENTS_API_VERSION}"
    )
    return Completion(url, headers, body)


class WebhookSender:
    """Sends TaskCompleted requests (loopback only) with one bounded HTTP client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None

    def deliver(self, webhook: Mapping[str, str], status: str, attempt: int) -> tuple[str, bool]:
        """``(outcome, done)`` of one attempt: ``done`` unless it is worth another try.
        The outcome never holds the token."""
        completion = completion_for(webhook, status)
        if completion.url is None:
            return f"not sent: the webhook has no {', '.join(completion.missing)}", True
        if not is_loopback_url(completion.url):
            return "not sent: the local workspace calls back to loopback addresses only", True
        try:
            answer = self._http().post(
                completion.url, headers=dict(completion.headers), json=dict(completion.body)
            )
        except httpx.HTTPError as error:
            return f"not delivered: {type(error).__name__}", False
        if 200 <= answer.status_code < 300:
            return f"delivered: {completion.body['result']}", True
        return f"not delivered: HTTP {answer.status_code}", False

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=CALL_TIMEOUT_SECONDS, trust_env=False)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
