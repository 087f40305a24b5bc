"""How one replica of the waiting service paces itself (:class:`WatcherSettings`)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field, replace

from amlwait.core.policy import PollPolicy
from amlwait.core.retry import RetryPolicy


@dataclass(frozen=True)
class WatcherSettings:
    """How a replica paces itself. ``lease_seconds`` is how long a dead replica's waits
    stay untouched before another one resumes them.

    Leases are measured on the watcher's clock, while the claim loop renews them every
    ``min(claim_interval, lease_seconds / 3)`` real seconds: on a virtual clock that jumps
    faster than real time (the benchmark's), ``lease_seconds`` must outlast the virtual time
    that passes between two claim rounds.
    """

    policy: PollPolicy = field(default_factory=PollPolicy)
    lease_seconds: float = 60.0
    # An outbox claim must outlast a whole delivery (a log takes three requests), or a
    # second sender could send the same message.
    outbox_lease_seconds: float = 90.0
    claim_interval: float = 5.0
    progress_interval: float = 10.0
    outbox_interval: float = 1.0
    outbox_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(initial=2.0, maximum=300.0, jitter=1.0)
    )
    feed_attempts: int = 5
    completed_attempts: int = 1000
    arm_error_limit: int = 5
    concurrency: int = 16
    # Once Event Grid events arrive for a wait's jobs, polling is only a safety net (events
    # can be late or missing): the batch is read this often, and a job when its event says
    # it ended.
    event_poll_interval: float = 300.0

    def event_policy(self) -> PollPolicy:
        interval = self.event_poll_interval
        slowest = max(self.policy.max_poll_interval, interval)
        return replace(self.policy, poll_interval=interval, max_poll_interval=slowest)


def replica_id() -> str:
    """This process's name as a lease owner: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
