"""amlwait: wait for any number of Azure Machine Learning jobs, fast and frugally.

The public API (imported lazily, so ``amlwait --help`` stays quick)::

    from amlwait import wait_for_jobs, WaitOptions, load_manifest, ArmJobSource

    manifest = load_manifest("training_jobs.json", subscription=..., resource_group=...,
                             workspace=...)
    async with ArmJobSource() as source:
        result = await wait_for_jobs(manifest, source=source)
    print(result.outcome)   # succeeded | failed | timed_out | interrupted

``wait_for_jobs_sync`` does the same without an event loop; ``amlwait.testing`` holds
:class:`~amlwait.testing.FakeJobSource` for your own tests.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "wait_for_jobs": "amlwait.waiter",
    "wait_for_jobs_sync": "amlwait.waiter",
    "Waiter": "amlwait.waiter",
    "WaitOptions": "amlwait.waiter",
    "WaitResult": "amlwait.waiter",
    "PollPolicy": "amlwait.core.policy",
    "RequestBudget": "amlwait.core.budget",
    "RetryPolicy": "amlwait.core.retry",
    "Deadline": "amlwait.core.deadline",
    "JobStatus": "amlwait.core.status",
    "Outcome": "amlwait.core.status",
    "BatchOutcome": "amlwait.core.tracker",
    "JobRef": "amlwait.core.jobs",
    "WorkspaceRef": "amlwait.core.jobs",
    "JobSnapshot": "amlwait.core.jobs",
    "JobSource": "amlwait.core.source",
    "Manifest": "amlwait.core.manifest",
    "load_manifest": "amlwait.manifest_io",
    "ArmJobSource": "amlwait.azureml.arm",
    "SystemClock": "amlwait.core.clock",
    "VirtualClock": "amlwait.core.clock",
    "AmlwaitError": "amlwait.errors",
    "InputError": "amlwait.errors",
    "ManifestError": "amlwait.errors",
    "AuthenticationError": "amlwait.errors",
    "ServiceError": "amlwait.errors",
}

__all__ = [
    "AmlwaitError",
    "ArmJobSource",
    "AuthenticationError",
    "BatchOutcome",
    "Deadline",
    "InputError",
    "JobRef",
    "JobSnapshot",
    "JobSource",
    "JobStatus",
    "Manifest",
    "ManifestError",
    "Outcome",
    "PollPolicy",
    "RequestBudget",
    "RetryPolicy",
    "ServiceError",
    "SystemClock",
    "VirtualClock",
    "WaitOptions",
    "WaitResult",
    "Waiter",
    "WorkspaceRef",
    "__version__",
    "load_manifest",
    "wait_for_jobs",
    "wait_for_jobs_sync",
]

if TYPE_CHECKING:
    from amlwait.azureml.arm import ArmJobSource
    from amlwait.core.budget import RequestBudget
    from amlwait.core.clock import SystemClock, VirtualClock
    from amlwait.core.deadline import Deadline
    from amlwait.core.jobs import JobRef, JobSnapshot, WorkspaceRef
    from amlwait.core.manifest import Manifest
    from amlwait.core.policy import PollPolicy
    from amlwait.core.retry import RetryPolicy
    from amlwait.core.source import JobSource
    from amlwait.core.status import JobStatus, Outcome
    from amlwait.core.tracker import BatchOutcome
    from amlwait.errors import (
        AmlwaitError,
        AuthenticationError,
        InputError,
        ManifestError,
        ServiceError,
    )
    from amlwait.manifest_io import load_manifest
    from amlwait.waiter import Waiter, WaitOptions, WaitResult, wait_for_jobs, wait_for_jobs_sync


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'amlwait' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
