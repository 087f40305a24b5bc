"""The ARM job document: validating what a PUT sends, rendering what a GET answers.

A job is stored as the ``properties`` object a client PUT (with defaults filled in), plus
what the workspace itself owns: status, times, exit code, error. :func:`job_document`
renders the answer ARM gives::

    {"id": "<workspace arm path>/jobs/NAME", "name": NAME,
     "type": "Microsoft.MachineLearningServices/workspaces/jobs",
     "properties": {<stored properties>, "status": STATUS,
                    "services": {<each service the client sent, with "status": STATUS>,
                                 "Studio": {"jobServiceType": "Studio",
                                            "endpoint": STUDIO_URL, "status": STATUS}}},
     "systemData": {"createdAt", "createdBy", "createdByType": "User",
                    "lastModifiedAt", "lastModifiedBy", "lastModifiedByType": "User"}}

``STUDIO_URL`` is Azure ML Studio's link, unless the caller passes its own: the local
workspace (which serves logs) passes its log page, so report links work offline.

A job that ran carries its exit code as a string in ``properties.properties["exitCode"]``
(ARM's ``properties`` bag is string to string). As in Azure ML, the ARM body carries no
error and no start or end time (``CommandJob`` has no such field): they are served by the
run history and MLflow routes (:mod:`~.tracking`) from :attr:`JobView.error_code`,
:attr:`JobView.error`, :attr:`JobView.started_at` and :attr:`JobView.ended_at`.

A PUT to an existing job is an update: only the mutable fields (``MUTABLE_FIELDS``) are
taken from the new body; the rest of what was stored stays. Tags are replaced, not merged.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from amlwait.core.jobs import JobRef, studio_url_for
from amlwait.workspace.errors import ArmError
from amlwait.workspace.webhooks import parse_webhooks, without_secrets

JOB_RESOURCE_TYPE = "Microsoft.MachineLearningServices/workspaces/jobs"
SUPPORTED_JOB_TYPES = frozenset({"Command", "Pipeline"})
MUTABLE_FIELDS = ("tags", "displayName", "description", "properties", "isArchived")
CREATED_BY = "amlwait local workspace"


@dataclass(frozen=True)
class JobView:
    """Everything needed to render one job; both backends produce these."""

    ref: JobRef
    properties: Mapping[str, Any]
    status: str
    created_at: float
    modified_at: float
    exit_code: int | None = None
    error: str | None = None
    """Why the job failed (run history's ``error.error.message``); ``None`` otherwise."""
    error_code: str | None = None
    """The error's code (``UserError``, ``SystemError``); ``None`` without an error."""
    started_at: float | None = None
    """When the job's command started (epoch seconds); ``None`` before it ran."""
    ended_at: float | None = None
    """When the job reached a terminal status (epoch seconds); ``None`` before."""
    parent: str | None = None
    """The pipeline job this job is a step of (its run id), ``None`` for a top-level job.
    ARM answers such a child with ``"properties": null``, as Azure ML does."""

    @property
    def is_archived(self) -> bool:
        return bool(self.properties.get("isArchived", False))

    @property
    def tags(self) -> Mapping[str, str]:
        tags = self.properties.get("tags") or {}
        return tags if isinstance(tags, Mapping) else {}


def iso8601(timestamp: float) -> str:
    """UTC ISO-8601 with microseconds and a ``Z``, as ARM writes systemData times."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_document(view: JobView, studio_url: str | None = None) -> dict[str, Any]:
    """ARM's answer for one job; ``studio_url`` replaces the ml.azure.com link (a local
    workspace passes its own log page, which works offline)."""
    if view.parent is not None:
        return _child_document(view)
    properties: dict[str, Any] = copy.deepcopy(without_secrets(view.properties))
    if view.exit_code is not None:
        bag = dict(properties.get("properties") or {})
        bag["exitCode"] = str(view.exit_code)
        properties["properties"] = bag
    properties["status"] = view.status
    services: dict[str, Any] = {}
    for key, service in (properties.get("services") or {}).items():
        echoed = dict(service) if isinstance(service, Mapping) else {}
        echoed["status"] = view.status
        services[key] = echoed
    services["Studio"] = {
        "jobServiceType": "Studio",
        "endpoint": studio_url or studio_url_for(view.ref),
        "status": view.status,
    }
    properties["services"] = services
    return {**_child_document(view), "properties": properties}


def _child_document(view: JobView) -> dict[str, Any]:
    """A pipeline step as ARM answers it: ``properties`` null (its status and details are
    in run history), as azure-ai-ml's ``_is_pipeline_child_job`` expects."""
    return {
        "id": f"{view.ref.workspace.arm_path}/jobs/{view.ref.name}",
        "name": view.ref.name,
        "type": JOB_RESOURCE_TYPE,
        "properties": None,
        "systemData": {
            "createdAt": iso8601(view.created_at),
            "createdBy": CREATED_BY,
            "createdByType": "User",
            "lastModifiedAt": iso8601(view.modified_at),
            "lastModifiedBy": CREATED_BY,
            "lastModifiedByType": "User",
        },
    }


def parse_put_body(raw: bytes) -> dict[str, Any]:
    """The validated ``properties`` object of a PUT body, or an :class:`ArmError` (400)."""
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad("InvalidRequestContent", f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise _bad("InvalidRequestContent", "The request body must be a JSON object.")
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise _bad("UserError", "The request body must have a 'properties' object.")
    job_type = properties.get("jobType")
    if job_type not in SUPPORTED_JOB_TYPES:
        raise _bad(
            "UserError",
            f"properties.jobType {job_type!r} is not supported by the local workspace; "
            "use 'Command' or 'Pipeline'.",
        )
    if job_type == "Pipeline":
        # imported here: pipelines renders its documents with this module's helpers
        from amlwait.workspace.pipelines import check_pipeline_properties

        check_pipeline_properties(properties)
        _check_common(properties)
        return properties
    command = properties.get("command")
    if not isinstance(command, str) or not _ARM_TEXT.search(command):
        raise _bad("UserError", "properties.command is required for a Command job.")
    environment = properties.get("environmentId")
    if not isinstance(environment, str) or not _ARM_TEXT.search(environment):
        raise _bad(
            "UserError",
            "properties.environmentId is required for a Command job: the environment's ARM "
            "id or an azureml: reference, e.g. 'azureml:my-env@latest' (the local workspace "
            "runs the command with this machine's tools, but Azure ML requires it).",
        )
    _check_common(properties)
    return properties


def _check_common(properties: dict[str, Any]) -> None:
    """The checks every job type shares (JobBase's fields); normalises the webhooks of
    ``notificationSetting`` (:mod:`~.webhooks`)."""
    setting = properties.get("notificationSetting")
    if setting is not None:
        if not isinstance(setting, dict):
            raise _bad("UserError", "properties.notificationSetting must be an object.")
        if "webhooks" in setting:
            setting["webhooks"] = parse_webhooks(
                setting["webhooks"], "properties.notificationSetting.webhooks"
            )
    services = properties.get("services")
    if services is not None and not (
        isinstance(services, dict) and all(isinstance(v, dict) for v in services.values())
    ):
        raise _bad("UserError", "properties.services must be an object of service objects.")
    for name in ("tags", "environmentVariables", "properties"):
        _require_string_map(properties, name)
    for name in ("inputs", "outputs"):
        value = properties.get(name)
        if value is not None and not isinstance(value, dict):
            raise _bad("UserError", f"properties.{name} must be an object.")
    for name in ("displayName", "experimentName", "description"):
        value = properties.get(name)
        if value is not None and not isinstance(value, str):
            raise _bad("UserError", f"properties.{name} must be a string.")
    archived = properties.get("isArchived")
    if archived is not None and not isinstance(archived, bool):
        raise _bad("UserError", "properties.isArchived must be true or false.")


def new_job_properties(name: str, requested: Mapping[str, Any]) -> dict[str, Any]:
    """What is stored for a new job: the request without ``status``, defaults filled in."""
    properties = {k: copy.deepcopy(v) for k, v in requested.items() if k not in _OWNED}
    services = properties.get("services")
    if isinstance(services, dict):
        properties["services"] = {
            k: {f: x for f, x in v.items() if f not in _SERVICE_OWNED}
            for k, v in services.items()
            if k != "Studio" and isinstance(v, dict)
        }
    properties["experimentName"] = properties.get("experimentName") or "Default"
    properties["displayName"] = properties.get("displayName") or name
    bags = ["tags", "properties", "inputs", "outputs"]
    if properties.get("jobType") != "Pipeline":  # a PipelineJob has no environmentVariables
        bags.append("environmentVariables")
    for bag in bags:
        if properties.get(bag) is None:
            properties[bag] = {}
    properties.setdefault("isArchived", False)
    return properties


def updated_job_properties(
    name: str, stored: Mapping[str, Any], requested: Mapping[str, Any]
) -> dict[str, Any]:
    """``stored`` with the mutable fields of ``requested`` applied (PUT on an existing job)."""
    properties = copy.deepcopy(dict(stored))
    for key in MUTABLE_FIELDS:
        if key in requested:
            properties[key] = copy.deepcopy(requested[key])
    properties["displayName"] = properties.get("displayName") or name
    for bag in ("tags", "properties"):
        if properties.get(bag) is None:
            properties[bag] = {}
    if properties.get("isArchived") is None:
        properties["isArchived"] = False
    return properties


# Fields the workspace owns: a client cannot set them. ("services" a client sends are kept
# and echoed with a status; "Studio" is always the workspace's own.)
_OWNED = frozenset({"status", "error"})
# Read-only fields of a JobService: the workspace fills them in.
_SERVICE_OWNED = frozenset({"status", "errorMessage"})
# The spec's pattern for CommandJob.command and .environmentId: at least one word character.
_ARM_TEXT = re.compile(r"[a-zA-Z0-9_]")


def _require_string_map(properties: Mapping[str, Any], name: str) -> None:
    value = properties.get(name)
    if value is None:
        return
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _bad("UserError", f"properties.{name} must be an object of string values.")


def _bad(code: str, message: str) -> ArmError:
    return ArmError(400, code, message)
