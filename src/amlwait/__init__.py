"""amlwait: wait for any number of Azure Machine Learning jobs, fast and frugally.

The public API (imported lazily, so ``amlwait --help`` stays quick)::

    from amlwait import wait_for_jobs, WaitOptions, load_manifest, ArmJobSource

    manifest = load_manifest("training_jobs.json", subscription=..., resource_group=...,
                             workspace=...)

    async def main() -> None:
        async with ArmJobSource() as source:   # AMLWAIT_ARM_ENDPOINT, else Azure
            result = await wait_for_jobs(manifest, source=source)
        print(result.outcome)   # succeeded | failed | timed_out | interrupted

    asyncio.run(main())

``wait_for_jobs_sync(manifest)`` does the same without an event loop (and opens and closes
the ``ArmJobSource`` itself). The README's examples run in the tests. A ``listener`` hears each
:data:`WaitEvent` (:class:`WaitStarted`, :class:`StatusChanged`, :class:`JobFinished`,
:class:`JobMissing`, :class:`JobRetried`, :class:`Warning_`, :class:`Tick`,
:class:`CancelSent`). :mod:`amlwait.testing` holds :class:`~amlwait.testing.FakeJobSource`
for your own tests.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("amlwait")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "wait_for_jobs": "amlwait.waiter",
    "wait_for_jobs_sync": "amlwait.waiter",
    "Waiter": "amlwait.waiter",
    "WaitOptions": "amlwait.waiter",
    "WaitResult": "amlwait.result",
    "WaitEvent": "amlwait.events",
    "Listener": "amlwait.events",
    "WaitStarted": "amlwait.events",
    "StatusChanged": "amlwait.events",
    "JobFinished": "amlwait.events",
    "JobMissing": "amlwait.events",
    "JobRetried": "amlwait.events",
    "Warning_": "amlwait.events",
    "Tick": "amlwait.events",
    "CancelSent": "amlwait.events",
    "PollPolicy": "amlwait.core.policy",
    "RequestBudget": "amlwait.core.budget",
    "RetryPolicy": "amlwait.core.retry",
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
    "CancelSent",
    "InputError",
    "JobFinished",
    "JobMissing",
    "JobRef",
    "JobRetried",
    "JobSnapshot",
    "JobSource",
    "JobStatus",
    "Listener",
    "Manifest",
    "ManifestError",
    "Outcome",
    "PollPolicy",
    "RequestBudget",
    "RetryPolicy",
    "ServiceError",
    "StatusChanged",
    "SystemClock",
    "Tick",
    "VirtualClock",
    "WaitEvent",
    "WaitOptions",
    "WaitResult",
    "WaitStarted",
    "Waiter",
    "Warning_",
    "WorkspaceRef",
    "__version__",
    "load_manifest",
    "testing",
    "wait_for_jobs",
    "wait_for_jobs_sync",
]

if TYPE_CHECKING:
    from amlwait import testing
    from amlwait.azureml.arm import ArmJobSource
    from amlwait.core.budget import RequestBudget
    from amlwait.core.clock import SystemClock, VirtualClock
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
    from amlwait.events import (
        CancelSent,
        JobFinished,
        JobMissing,
        JobRetried,
        Listener,
        StatusChanged,
        Tick,
        WaitEvent,
        WaitStarted,
        Warning_,
    )
    from amlwait.manifest_io import load_manifest
    from amlwait.result import WaitResult
    from amlwait.waiter import Waiter, WaitOptions, wait_for_jobs, wait_for_jobs_sync


def __getattr__(name: str) -> Any:
    if name == "testing":
        return importlib.import_module("amlwait.testing")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'amlwait' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
