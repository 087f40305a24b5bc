"""The ARM job document: validating what a PUT sends, rendering what a GET answers.

A job is stored as the ``properties`` object a client PUT (with defaults filled in), plus
what the workspace itself owns: status, times, exit code, error. :func:`job_document`
renders the answer ARM gives::

    {"id": "<workspace arm path>/jobs/NAME", "name": NAME,
     "type": "Microsoft.MachineLearningServices/workspaces/jobs",
     "properties": {<stored properties>, "status": STATUS,
                    "services": {"Studio": {"endpoint": STUDIO_URL}},
                    "error": {"code", "message"}          # only when the job failed
                   },
     "systemData": {"createdAt", "createdBy", "createdByType": "User", "lastModifiedAt"}}

A job that ran carries its exit code as a string in ``properties.properties["exitCode"]``
(ARM's ``properties`` bag is string to string); a failed or killed job also carries
``properties.error``, which real ARM does not send but which makes the local failure
readable.

A PUT to an existing job is an update: only the mutable fields (``MUTABLE_FIELDS``) are
taken from the new body; the rest of what was stored stays. Tags are replaced, not merged.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from amlwait.core.jobs import JobRef, studio_url_for
from amlwait.workspace.errors import ArmError

JOB_RESOURCE_TYPE = "Microsoft.MachineLearningServices/workspaces/jobs"
SUPPORTED_JOB_TYPES = frozenset({"Command"})
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


def job_document(view: JobView) -> dict[str, Any]:
    properties: dict[str, Any] = copy.deepcopy(dict(view.properties))
    if view.exit_code is not None:
        bag = dict(properties.get("properties") or {})
        bag["exitCode"] = str(view.exit_code)
        properties["properties"] = bag
    properties["status"] = view.status
    properties["services"] = {"Studio": {"endpoint": studio_url_for(view.ref)}}
    if view.error is not None:
        properties["error"] = {"code": "UserError", "message": view.error}
    return {
        "id": f"{view.ref.workspace.arm_path}/jobs/{view.ref.name}",
        "name": view.ref.name,
        "type": JOB_RESOURCE_TYPE,
        "properties": properties,
        "systemData": {
            "createdAt": iso8601(view.created_at),
            "createdBy": CREATED_BY,
            "createdByType": "User",
            "lastModifiedAt": iso8601(view.modified_at),
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
            "use 'Command'.",
        )
    command = properties.get("command")
    if not isinstance(command, str) or not command.strip():
        raise _bad("UserError", "properties.command is required for a Command job.")
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
    return properties


def new_job_properties(name: str, requested: Mapping[str, Any]) -> dict[str, Any]:
    """What is stored for a new job: the request without ``status``, defaults filled in."""
    properties = {k: copy.deepcopy(v) for k, v in requested.items() if k not in _OWNED}
    properties["experimentName"] = properties.get("experimentName") or "Default"
    properties["displayName"] = properties.get("displayName") or name
    for bag in ("tags", "properties", "inputs", "outputs", "environmentVariables"):
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


# Fields the workspace owns: a client cannot set them.
_OWNED = frozenset({"status", "services", "error"})


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
