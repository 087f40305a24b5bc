"""What ARM answers, and how amlwait reads it: every answer whole and bounded
(:class:`Answer`), shaped as ARM documents it or :class:`MalformedAnswer` (retried as
transient), ARM's error texts scrubbed to one printable line, a missing workspace or resource
group told apart from a missing job, a job's JSON as a :class:`~amlwait.core.jobs.JobSnapshot`
and a listing page as its jobs and ``nextLink``.

No I/O here: :mod:`amlwait.azureml.arm` sends the requests and hands each answer to one of
the readers at the end of this module.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from amlwait.core.jobs import JobSnapshot, WorkspaceRef
from amlwait.core.status import JobStatus
from amlwait.errors import InputError, ServiceError
from amlwait.redact import scrub


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


def printable(text: str) -> str:
    """``text`` on one line, without control characters (a server's text may hold
    newlines, terminal escapes or logging commands)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def error_text(answer: Answer, token: str | None = None) -> str:
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
    text = printable(scrub(text, token))
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
        f"the {what} was not found (404 {printable(code)[:80]}); check --subscription, "
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
    job_type = _optional_text(properties.get("jobType"), "properties.jobType")
    return JobSnapshot(
        name=name,
        status=status or JobStatus.UNKNOWN.value,
        tags={str(k): str(v) for k, v in tags.items()},
        studio_url=str(studio) if studio else None,
        created_at=str(created) if created else None,
        experiment=str(experiment) if experiment else None,
        job_type=job_type,
    )


@dataclass(frozen=True)
class Page:
    jobs: list[JobSnapshot]
    next_link: str | None


def parse_page(answer: Answer) -> Page:
    page = answer.json_object()
    items = page.get("value")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise MalformedAnswer(f"value is a JSON {type(items).__name__}, not a list")
    next_link = _optional_text(page.get("nextLink"), "nextLink")
    return Page([parse_job(item) for item in items], next_link)


# A 404 that says the workspace (or its resource group, or subscription) does not exist is
# an InputError (exit 2); any other 404 means the job.


def as_is(answer: Answer) -> Answer:
    return answer


def _check_workspace(answer: Answer, workspace: WorkspaceRef) -> None:
    missing = missing_workspace_error(answer, workspace)
    if missing is not None:
        raise missing


def found_in(workspace: WorkspaceRef) -> Callable[[Answer], bool]:
    def read(answer: Answer) -> bool:
        _check_workspace(answer, workspace)
        return answer.status != 404

    return read


def job_or_none_in(workspace: WorkspaceRef) -> Callable[[Answer], JobSnapshot | None]:
    def read(answer: Answer) -> JobSnapshot | None:
        _check_workspace(answer, workspace)
        return None if answer.status == 404 else parse_job(answer.json_object())

    return read


def definition_or_none_in(
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


def listing_reader(workspace: WorkspaceRef) -> Callable[[Answer], Page]:
    def read(answer: Answer) -> Page:
        _check_workspace(answer, workspace)
        if answer.status == 404:
            raise ServiceError(
                f"workspace {workspace} was not found (404 {error_text(answer)}); "
                "check --subscription, --resource-group and --workspace-name"
            )
        return parse_page(answer)

    return read
