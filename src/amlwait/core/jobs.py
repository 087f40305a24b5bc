"""What the core knows about a job: where it lives and what was last read of it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Azure ML's job name rule (case-sensitive, unique per workspace).
JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")
MAX_TAG_KEY_LENGTH = 100


@dataclass(frozen=True, order=True)
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


@dataclass(frozen=True, order=True)
class JobRef:
    workspace: WorkspaceRef
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class JobSnapshot:
    """One read of a job, as the job source saw it."""

    name: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    studio_url: str | None = None
    created_at: str | None = None
    experiment: str | None = None  # the job's experimentName (its MLflow experiment)


def studio_url_for(ref: JobRef) -> str:
    """The Azure ML Studio link for a job, for when the service gave none."""
    return f"https://ml.azure.com/runs/{ref.name}?wsid={ref.workspace.arm_path}"


def is_valid_job_name(name: str) -> bool:
    return bool(JOB_NAME_PATTERN.match(name))


def tag_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a tag key, or ``None`` when it can."""
    if not key.strip():
        return "is empty"
    if len(key) > MAX_TAG_KEY_LENGTH:
        return f"is {len(key)} characters long; Azure ML allows at most {MAX_TAG_KEY_LENGTH}"
    if any(ord(c) < 32 for c in key):
        return "contains control characters"
    return None
