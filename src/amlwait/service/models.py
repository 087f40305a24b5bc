"""What a ``POST /v1/waits`` must carry, checked before anything is stored.

The body (at most 2,000 characters, the limit of ``InvokeRESTAPI@1``'s ``body`` input) is a
:class:`WaitRequest`; the callback headers ``InvokeRESTAPI@1`` sends with
``waitForCompletion: true`` are a :class:`Callback` plus the ``AuthToken``. Every problem is
a :class:`RequestProblem`: an HTTP status and one line saying what is wrong.

``PlanUrl`` is where the completion (with the pipeline's token) will be sent, so it must
start with an allowed organization URL and be https — plain http only to a loopback
address, for tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from amlwait.core.duration import parse_duration
from amlwait.core.jobs import (
    RESOURCE_GROUP_PATTERN,
    RESOURCE_GROUP_RULE,
    SUBSCRIPTION_PATTERN,
    SUBSCRIPTION_RULE,
    WORKSPACE_PATTERN,
    WORKSPACE_RULE,
    job_name_problem,
    tag_key_problem,
)
from amlwait.redact import is_loopback_url

MAX_BODY_CHARS = 2000
# How deep a wait's JSON may nest: the real body nests 2 levels (the object, ``jobs``).
# Deeper input is refused before it is parsed (Python's parser recurses: ~1,000 levels
# raised RecursionError, a 500).
MAX_WAIT_NESTING = 8
MAX_TIMEOUT_SECONDS = 30 * 86400.0  # a server job runs at most 30 days
DEFAULT_TIMEOUT = "48h"
CALLBACK_HEADERS = (
    "PlanUrl",
    "ProjectId",
    "HubName",
    "PlanId",
    "JobId",
    "TimelineId",
    "TaskInstanceId",
)
AUTH_TOKEN_HEADER = "AuthToken"
# Ids go into URL paths of the callback: GUIDs in practice, never anything path-like.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")


class RequestProblem(Exception):
    """A request refused: ``status`` (400, 401, 403) and one line for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class WaitRequest(BaseModel):
    """The JSON body of ``POST /v1/waits``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    subscription: str = Field(min_length=1, max_length=100)
    resource_group: str = Field(alias="resourceGroup", min_length=1, max_length=90)
    workspace: str = Field(min_length=1, max_length=255)
    tag: str
    expected_jobs: int = Field(alias="expectedJobs", ge=1, le=100_000)
    jobs: tuple[str, ...] | None = None
    timeout: str = DEFAULT_TIMEOUT
    fail_fast: bool = Field(default=False, alias="failFast")
    cancel_remaining: bool = Field(default=False, alias="cancelRemaining")

    # Each is a segment of the ARM path read with the service's own token: Azure's naming
    # rules (amlwait.core.jobs), so ".." or "WS\n" never reaches a request.
    @field_validator("subscription")
    @classmethod
    def _subscription(cls, value: str) -> str:
        return _follows_rule(value, SUBSCRIPTION_PATTERN, SUBSCRIPTION_RULE)

    @field_validator("resource_group")
    @classmethod
    def _resource_group(cls, value: str) -> str:
        return _follows_rule(value, RESOURCE_GROUP_PATTERN, RESOURCE_GROUP_RULE)

    @field_validator("workspace")
    @classmethod
    def _workspace(cls, value: str) -> str:
        return _follows_rule(value, WORKSPACE_PATTERN, WORKSPACE_RULE)

    @field_validator("tag")
    @classmethod
    def _tag_key(cls, value: str) -> str:
        problem = tag_key_problem(value)
        if problem is not None:
            raise ValueError(f"the tag key {problem}")
        return value

    @field_validator("jobs")
    @classmethod
    def _job_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("is empty; leave it out to list the batch by its tag")
        for name in value:
            problem = job_name_problem(name)
            if problem is not None:
                raise ValueError(problem)
        if len(set(value)) != len(value):
            raise ValueError("names a job twice")
        return value

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        seconds = parse_duration(value)
        if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
            raise ValueError("must be more than 0 and at most 30d (a server job's limit)")
        return value

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)

    def to_document(self) -> dict[str, Any]:
        """As stored (and as the caller wrote it: camelCase)."""
        return self.model_dump(by_alias=True, mode="json")


def _follows_rule(value: str, pattern: re.Pattern[str], rule: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"{value[:60]!r} is not valid: {rule}")
    return value


@dataclass(frozen=True)
class Callback:
    """Where and how to report back to the pipeline (everything but the token)."""

    plan_url: str
    project_id: str
    hub_name: str
    plan_id: str
    job_id: str
    timeline_id: str
    task_instance_id: str

    @property
    def plan_key(self) -> str:
        """What makes a request a repeat of an earlier one."""
        return f"{self.plan_id}/{self.job_id}/{self.task_instance_id}"

    def to_document(self) -> dict[str, str]:
        names = dict(zip(asdict(self), CALLBACK_HEADERS, strict=True))
        return {names[key]: value for key, value in asdict(self).items()}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Callback:
        return cls(*(str(document[name]) for name in CALLBACK_HEADERS))


# Run statuses after which an event is worth a read: the run ended, or may have failed.
_READ_ON = frozenset(
    status.lower()
    for status in ("Completed", "Failed", "Canceled", "NotResponding", "Paused", "Unknown")
)


@dataclass(frozen=True)
class RunEvent:
    """An Azure ML run event from Event Grid: which run, its tag keys, and the status it
    reports (lower-cased; ``None`` when the event carries none)."""

    run_id: str
    tags: tuple[str, ...] = ()
    status: str | None = None
    completed: bool = False  # a RunCompleted event

    @property
    def worth_reading(self) -> bool:
        """Whether the run should be read now: the event says it ended, or says nothing
        we can judge. A run that only moved on (Queued, Running) waits for the next poll."""
        return self.completed or self.status is None or self.status in _READ_ON


# In a PlanUrl path: an encoded "/", "\\" or "%" would be decoded by some server after we
# compared (so "%2e%2e%2f" or "%252e" could climb out of the organization); none is ever
# needed in an organization URL, so they are refused rather than interpreted.
_AMBIGUOUS_IN_PATH = re.compile(r"%(?:2f|5c|25)|\\|[\x00-\x20\x7f]", re.IGNORECASE)
_ENCODED_DOT = re.compile(r"%2e", re.IGNORECASE)


def normalize_url(url: str) -> str | None:
    """``url`` as it will be sent and compared: scheme and host lower-cased, ``%2e`` decoded
    to ``.``, dot segments resolved (RFC 3986 §5.2.4), one trailing ``/``. ``None`` when it
    cannot be compared safely: not http(s), user info, query or fragment, an encoded
    ``/``, ``\\`` or ``%`` in the path, or ``..`` climbing above the root."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        return None
    if parts.username or parts.password or parts.query or parts.fragment:
        return None
    if _AMBIGUOUS_IN_PATH.search(parts.path):
        return None
    segments: list[str] = []
    for segment in _ENCODED_DOT.sub(".", parts.path).split("/")[1:]:
        if segment == "..":
            if not segments:
                return None
            segments.pop()
        elif segment not in (".", ""):
            segments.append(segment)
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    netloc = host if port is None else f"{host}:{port}"
    path = "/" + "".join(f"{segment}/" for segment in segments)
    return f"{parts.scheme.lower()}://{netloc}{path}"


def normalize_org(url: str) -> str:
    """An allowed organization URL as compared (see :func:`normalize_url`), lower case."""
    return (normalize_url(url) or url.strip().rstrip("/") + "/").lower()


def org_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an allowed organization URL, or ``None``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{url!r} is not an http(s) URL such as https://dev.azure.com/myorg/"
    if parts.scheme == "http" and not is_loopback_url(url):
        return f"{url!r} uses plain http to a host that is not loopback; use https"
    if parts.query or parts.fragment:
        return f"{url!r} has a query or fragment; give the organization URL only"
    if normalize_url(url) is None:
        return f"{url!r} has user info, an encoded '/', '\\' or '%', or '..' in its path"
    return None


def plan_url_allowed(plan_url: str, allowed_orgs: Sequence[str]) -> bool:
    """True when the token may be sent to ``plan_url``: https (or http to a loopback
    address), and, once normalised (:func:`normalize_url`: dot segments resolved, encoded
    ones too), it lies under one of the allowed organization URLs."""
    target = normalize_url(plan_url)
    if target is None:
        return False
    if target.startswith("http:") and not is_loopback_url(target):
        return False
    target = target.lower()
    return any(target.startswith(normalize_org(org)) for org in allowed_orgs)


def parse_callback(headers: Mapping[str, str], allowed_orgs: Sequence[str]) -> tuple[Callback, str]:
    """The callback and the ``AuthToken`` from the request headers."""
    missing = [name for name in (*CALLBACK_HEADERS, AUTH_TOKEN_HEADER) if not headers.get(name)]
    if missing:
        raise RequestProblem(
            400,
            f"missing header {', '.join(missing)}: call from InvokeRESTAPI@1 with "
            "waitForCompletion: true (see `amlwait render service`)",
        )
    values = {name: headers[name].strip() for name in CALLBACK_HEADERS}
    for name in CALLBACK_HEADERS[1:]:
        if not _ID_PATTERN.match(values[name]):
            raise RequestProblem(400, f"header {name} is not a valid id")
    plan_url = normalize_url(values["PlanUrl"])
    if plan_url is None or not plan_url_allowed(plan_url, allowed_orgs):
        raise RequestProblem(
            403,
            "PlanUrl is not an https URL of an allowed Azure DevOps organization "
            "(serve --allow-org / AMLWAIT_ALLOWED_ORGS)",
        )
    token = headers[AUTH_TOKEN_HEADER].strip()
    # Printable ASCII only: what an HTTP header can carry as is (a control character could
    # split a header; a non-ASCII one fails to encode later, far from here).
    if not token or any(not 33 <= ord(c) <= 126 for c in token):
        raise RequestProblem(400, "header AuthToken is not a valid token")
    callback = Callback(
        plan_url,
        values["ProjectId"],
        values["HubName"],
        values["PlanId"],
        values["JobId"],
        values["TimelineId"],
        values["TaskInstanceId"],
    )
    return callback, token


def parse_wait_request(body: bytes) -> WaitRequest:
    """The body as a :class:`WaitRequest`, or a :class:`RequestProblem` (400)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestProblem(400, "the body is not UTF-8 text") from None
    if len(text) > MAX_BODY_CHARS:
        raise RequestProblem(
            400, f"the body is {len(text)} characters; at most {MAX_BODY_CHARS} are accepted"
        )
    document = load_json(text, max_nesting=MAX_WAIT_NESTING)
    if not isinstance(document, dict):
        raise RequestProblem(400, "the body must be a JSON object")
    try:
        # JSON mode: strict types as JSON has them (an array is a valid ``jobs``).
        request = WaitRequest.model_validate_json(text)
    except ValidationError as error:
        raise RequestProblem(400, _first_problem(error)) from None
    if request.jobs is not None and len(request.jobs) != request.expected_jobs:
        raise RequestProblem(
            400,
            f"expectedJobs is {request.expected_jobs} but jobs names {len(request.jobs)}; "
            "they must agree",
        )
    return request


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_nesting(text: str) -> int:
    """How deep the arrays and objects of JSON ``text`` nest (brackets inside strings do
    not count). Linear in the text; never recurses."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def load_json(text: str | bytes, *, max_nesting: int) -> Any:
    """``text`` parsed, or a :class:`RequestProblem` (400) when it is not JSON or nests
    deeper than ``max_nesting``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestProblem(400, "the body is not UTF-8 text") from None
    nesting = json_nesting(text)
    if nesting > max_nesting:
        raise RequestProblem(
            400, f"the body nests {nesting} levels deep; at most {max_nesting} are accepted"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise RequestProblem(400, f"the body is not valid JSON ({error})") from None


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]) or "body"
    kind = problem["type"]
    if kind == "extra_forbidden":
        return f"unknown field {where!r} in the body"
    if kind == "missing":
        return f"the body lacks {where!r}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"
