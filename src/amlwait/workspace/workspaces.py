"""Which workspaces a local workspace server has, and ARM's 404s for the others.

A :class:`KnownWorkspaces` is a list of :class:`WorkspaceSpec` (``[[SUB/]RG/]NAME``; a part
left out matches any value), or ``None`` for "every workspace" (the in-process default, kept
for tests). Names compare case-insensitively, as ARM compares resource group and resource
names. :meth:`KnownWorkspaces.check` raises the :class:`~.errors.ArmError` ARM answers when
the path names something that does not exist, checked from the outside in:

- no served subscription matches → 404 ``SubscriptionNotFound``;
- no served resource group in it → 404 ``ResourceGroupNotFound``
  ("Resource group 'RG' could not be found.");
- no such workspace → for the workspace itself 404 ``ResourceNotFound`` ("The Resource
  'Microsoft.MachineLearningServices/workspaces/WS' under resource group 'RG' was not
  found…"), for anything under it (jobs, run history, MLflow) 404 ``ParentResourceNotFound``
  ("Failed to perform 'read' on resource(s) of type 'workspaces/jobs', because the parent
  resource '…/workspaces/WS' could not be found.").

Every such message ends by naming what this server does serve, so a user who mistyped a
name sees the right one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from amlwait.core.jobs import WorkspaceRef
from amlwait.workspace.errors import ArmError

PROVIDER = "Microsoft.MachineLearningServices"
WORKSPACE_TYPE = f"{PROVIDER}/workspaces"
# The workspaceName parameter of the spec (machineLearningServices.json).
_WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,32}\Z")
_RESOURCE_GROUP = re.compile(r"[-\w._()]{1,90}\Z")


@dataclass(frozen=True)
class WorkspaceSpec:
    """One served workspace; ``None`` for a part means any value."""

    name: str
    resource_group: str | None = None
    subscription: str | None = None

    @classmethod
    def parse(cls, text: str) -> WorkspaceSpec:
        """``NAME``, ``RG/NAME`` or ``SUB/RG/NAME``; ValueError naming what is wrong."""
        parts = text.split("/")
        if len(parts) > 3 or any(not part for part in parts):
            raise ValueError(f"--workspace {text!r} is not NAME, RG/NAME or SUBSCRIPTION/RG/NAME")
        name = parts[-1]
        if not _WORKSPACE_NAME.match(name):
            raise ValueError(
                f"--workspace {text!r}: {name!r} is not a workspace name (3 to 33 letters, "
                "digits, '-' or '_', starting with a letter or digit)"
            )
        group = parts[-2] if len(parts) >= 2 else None
        if group is not None and (not _RESOURCE_GROUP.match(group) or group.endswith(".")):
            raise ValueError(f"--workspace {text!r}: {group!r} is not a resource group name")
        return cls(name, group, parts[0] if len(parts) == 3 else None)

    @classmethod
    def of(cls, ref: WorkspaceRef) -> WorkspaceSpec:
        return cls(ref.workspace, ref.resource_group, ref.subscription)

    def __str__(self) -> str:
        return "/".join(p for p in (self.subscription, self.resource_group, self.name) if p)


def _same(pattern: str | None, value: str) -> bool:
    return pattern is None or pattern.lower() == value.lower()


class KnownWorkspaces:
    """The workspaces a server answers for; ``KnownWorkspaces(None)`` answers for any."""

    def __init__(self, specs: Iterable[WorkspaceSpec | WorkspaceRef | str] | None) -> None:
        if specs is None:
            self.specs: tuple[WorkspaceSpec, ...] | None = None
            return
        parsed: list[WorkspaceSpec] = []
        for spec in specs:
            if isinstance(spec, WorkspaceRef):
                parsed.append(WorkspaceSpec.of(spec))
            elif isinstance(spec, str):
                parsed.append(WorkspaceSpec.parse(spec))
            else:
                parsed.append(spec)
        if not parsed:
            raise ValueError("a local workspace needs at least one workspace to serve")
        self.specs = tuple(parsed)

    @property
    def any(self) -> bool:
        return self.specs is None

    def describe(self) -> str:
        if self.specs is None:
            return "any workspace"
        return ", ".join(str(spec) for spec in self.specs)

    def check(self, subscription: str, resource_group: str, workspace: str, *, child: str) -> None:
        """Raise ARM's 404 unless the workspace is served; ``child`` is the resource type
        under the workspace the request is for (``"jobs"``), or ``""`` for the workspace."""
        if self.specs is None:
            return
        in_subscription = [s for s in self.specs if _same(s.subscription, subscription)]
        serves = f" (this local workspace serves: {self.describe()})"
        if not in_subscription:
            raise ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{subscription}' could not be found.{serves}",
            )
        in_group = [s for s in in_subscription if _same(s.resource_group, resource_group)]
        if not in_group:
            raise ArmError(
                404,
                "ResourceGroupNotFound",
                f"Resource group '{resource_group}' could not be found.{serves}",
            )
        if any(_same(s.name, workspace) for s in in_group):
            return
        if not child:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{WORKSPACE_TYPE}/{workspace}' under resource group "
                f"'{resource_group}' was not found. For more details please go to "
                f"https://aka.ms/ARMResourceNotFoundFix{serves}",
            )
        parent = (
            f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
            f"/providers/{WORKSPACE_TYPE}/{workspace}"
        )
        raise ArmError(
            404,
            "ParentResourceNotFound",
            f"Failed to perform 'read' on resource(s) of type 'workspaces/{child}', because "
            f"the parent resource '{parent}' could not be found.{serves}",
        )
