"""What a watcher tells its observers: one frozen record per finished wait.

A benchmark or a metrics exporter subscribes with an object that has
``on_wait_finished(record)`` (the :class:`WaitHook` protocol) and passes it to
:class:`~amlwait.service.watcher.Watcher` (``hooks=[...]``), instead of overriding the
watcher. A hook runs in the watcher's event loop right after the wait's outcome was
written (or refused) and must return quickly; an exception it raises is logged and
ignored, so no hook can change what happens to a wait.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from amlwait.core.tracker import BatchOutcome
from amlwait.result import WaitResult


@dataclass(frozen=True)
class WaitFinished:
    """One wait this replica finished.

    ``recorded`` is True when the outcome and its TaskCompleted were stored by this
    replica (``Store.finish_wait`` succeeded); False when another replica had taken the
    wait over, and then nothing is sent by this one. ``devops_result`` is what the
    TaskCompleted says (``succeeded`` or ``failed``). ``job_counts`` counts the jobs by
    outcome (``succeeded``, ``failed``, ``canceled``, …, and ``unfinished``); it is empty
    when the wait ended before its jobs were read. ``requests`` is the job source's request
    count when the wait ended: the source is shared by every wait of the replica, so it is
    the replica's total so far, not this wait's alone. ``created_at`` and
    ``finished_at`` are epoch seconds on the watcher's clock. ``result`` is the waiter's
    result; None when the wait failed without one (its jobs never all appeared, or Azure ML
    kept failing).
    """

    wait_id: str
    tag: str
    outcome: BatchOutcome
    devops_result: str
    reason: str | None
    jobs: tuple[str, ...]
    job_counts: Mapping[str, int]
    requests: int
    created_at: float
    finished_at: float
    recorded: bool
    result: WaitResult | None = None


class WaitHook(Protocol):
    """Told about every wait a watcher finishes."""

    def on_wait_finished(self, record: WaitFinished) -> None: ...
