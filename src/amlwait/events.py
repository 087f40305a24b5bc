"""What a wait tells its listener, and the listener's type.

A listener is called, in the engine's task, with each :data:`WaitEvent` as it happens:

- :class:`WaitStarted` once, first;
- the tracker's events (:mod:`amlwait.core.tracker`): :class:`StatusChanged`,
  :class:`JobFinished`, :class:`JobMissing`, :class:`JobRetried`, :class:`Warning_`;
- :class:`Tick` after a wake that read jobs, when a whole percent more jobs finished or
  at most every 30 s otherwise, and once more when a read cannot be done in time;
- :class:`CancelSent` per job cancelled as the wait ends (``error`` set when it failed);
- :class:`ListingFailed` when a workspace's listing is unusable (once per episode).

A listener must not block: it runs between reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from amlwait.core.jobs import WorkspaceRef
from amlwait.core.tracker import (
    JobFinished,
    JobMissing,
    JobRetried,
    JobState,
    StatusChanged,
    Warning_,
)


@dataclass(frozen=True)
class WaitStarted:
    """The wait began at ``at`` for ``jobs`` in ``workspaces``; it ends by ``deadline``
    (epoch seconds); ``tag``: the batch tag its listings filter by, if any."""

    jobs: Sequence[JobState]
    workspaces: Sequence[WorkspaceRef]
    deadline: float
    at: float
    tag: str | None


@dataclass(frozen=True)
class Tick:
    """The engine woke and read; ``counts`` are jobs per outcome or status."""

    at: float
    counts: dict[str, int]
    remaining: float
    finished: int
    total: int


@dataclass(frozen=True)
class CancelSent:
    job: JobState
    at: float
    error: str | None = None


@dataclass(frozen=True)
class ListingFailed:
    """A workspace's listing was unusable (a nextLink loop, a page or job cap passed);
    its due jobs were read by GET. Sent once until a listing of it works again."""

    workspace: WorkspaceRef
    message: str
    at: float


WaitEvent = (
    WaitStarted
    | StatusChanged
    | JobFinished
    | JobMissing
    | JobRetried
    | Warning_
    | Tick
    | CancelSent
    | ListingFailed
)

Listener = Callable[[WaitEvent], None]

__all__ = [
    "CancelSent",
    "JobFinished",
    "JobMissing",
    "JobRetried",
    "Listener",
    "ListingFailed",
    "StatusChanged",
    "Tick",
    "WaitEvent",
    "WaitStarted",
    "Warning_",
]
