"""What the core knows about a job: where it lives and what was last read of it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Each name below becomes one segment of an ARM URL path, so each is checked against
# Azure's own rule before any request: nothing path-like ("..", "/", "?", "#") and nothing
# that ends a line gets through. ``\Z``, never ``$``: ``$`` also matches before a final
# newline, so "j0\n" would pass.
#
# Azure ML's job name rule (case-sensitive, unique per workspace; the REST spec's pattern).
JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}\Z")
# A subscription id is a GUID.
SUBSCRIPTION_PATTERN = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
# A resource group: 1-90 letters or digits (Unicode ones too), '_', '-', '.', '(' and ')',
# not ending in '.' (so neither "." nor ".." is one).
RESOURCE_GROUP_PATTERN = re.compile(r"^[-\w.()]{0,89}[-\w()]\Z")
# An Azure ML workspace: 3-33 characters, letters, digits, '_' and '-', starting with a
# letter or digit (the REST spec's ``WorkspaceNameParameter``).
WORKSPACE_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}\Z")
MAX_TAG_KEY_LENGTH = 100

SUBSCRIPTION_RULE = "a subscription id is a GUID such as 00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP_RULE = (
    "a resource group name has 1-90 letters, digits, '_', '-', '.', '(' or ')' "
    "and does not end in '.'"
)
WORKSPACE_RULE = (
    "a workspace name has 3-33 letters, digits, '_' or '-' and starts with a letter or digit"
)
JOB_NAME_RULE = "a job name has 1-255 letters, digits, '_' or '-' and starts with a letter or digit"


@dataclass(frozen=True, order=True, slots=True)
class WorkspaceRef:
    subscription: str
    resource_group: str
    workspace: str

    @property
    def arm_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )

    def __str__(self) -> str:
        return f"{self.subscription}/{self.resource_group}/{self.workspace}"


@dataclass(frozen=True, order=True, slots=True)
class JobRef:
    workspace: WorkspaceRef
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """One read of a job, as the job source saw it."""

    name: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    studio_url: str | None = None
    created_at: str | None = None
    experiment: str | None = None  # the job's experimentName (its MLflow experiment)
    job_type: str | None = None  # properties.jobType ("Command", "Pipeline", ...) when sent


def studio_url_for(ref: JobRef) -> str:
    """The Azure ML Studio link for a job, for when the service gave none."""
    return f"https://ml.azure.com/runs/{ref.name}?wsid={ref.workspace.arm_path}"


def is_valid_job_name(name: str) -> bool:
    return bool(JOB_NAME_PATTERN.match(name))


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:60] + "…")


def job_name_problem(name: str) -> str | None:
    """Why ``name`` is not an Azure ML job name (one phrase), or ``None`` when it is."""
    if JOB_NAME_PATTERN.match(name):
        return None
    return f"{_shown(name)} is not a valid job name: {JOB_NAME_RULE}"


def workspace_ref_problem(subscription: str, resource_group: str, workspace: str) -> str | None:
    """Why these three names cannot address a workspace on ARM (the first one at fault, one
    phrase naming it and the rule), or ``None`` when all three follow Azure's naming rules."""
    checks = (
        ("subscription", subscription, SUBSCRIPTION_PATTERN, SUBSCRIPTION_RULE),
        ("resource group", resource_group, RESOURCE_GROUP_PATTERN, RESOURCE_GROUP_RULE),
        ("workspace", workspace, WORKSPACE_PATTERN, WORKSPACE_RULE),
    )
    for what, value, pattern, rule in checks:
        if not pattern.match(value):
            return f"the {what} {_shown(value)} is not valid: {rule}"
    return None


def tag_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a tag key, or ``None`` when it can."""
    if not key.strip():
        return "is empty"
    if len(key) > MAX_TAG_KEY_LENGTH:
        return f"is {len(key)} characters long; Azure ML allows at most {MAX_TAG_KEY_LENGTH}"
    if any(ord(c) < 32 for c in key):
        return "contains control characters"
    return None
