"""How often each job is re-read, and how long doubtful states are tolerated."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PollPolicy:
    """Per-job polling: fast at first and after a change, slower while nothing changes.

    After a read that saw a new status, the job is read again after ``poll_interval``;
    after a read that saw the same status, after ``min(max_poll_interval, previous *
    backoff)``. So a job is never read twice within ``poll_interval``, and a job that
    stays in one state is read at least every ``max_poll_interval``. A batch read by LIST
    (a tag) backs off as a whole: one page costs one request whatever it holds, so the
    listing is repeated after ``poll_interval`` when any job in it changed, and otherwise
    after the backed-off interval of the previous listing (and no faster than the
    listing's pages allow: :func:`amlwait.core.schedule.listing_floor`).

    ``not_found_grace``: a listed job the service does not know fails once it has been
    missing this long (it may still be being submitted).
    ``suspect_grace``: NotResponding or Paused fail once they persist this long
    (NotResponding can recover).
    """

    poll_interval: float = 15.0
    max_poll_interval: float = 120.0
    backoff: float = 1.5
    not_found_grace: float = 300.0
    suspect_grace: float = 900.0

    def __post_init__(self) -> None:
        if self.poll_interval <= 0:
            raise ValueError("the poll interval must be positive")
        if self.max_poll_interval < self.poll_interval:
            raise ValueError(
                "the maximum poll interval must be at least the poll interval "
                f"({self.max_poll_interval:g}s < {self.poll_interval:g}s)"
            )
        if self.backoff < 1:
            raise ValueError("the poll backoff must be at least 1")
        if self.not_found_grace < 0 or self.suspect_grace < 0:
            raise ValueError("grace periods cannot be negative")

    def next_interval(self, previous: float | None, changed: bool) -> float:
        if changed or previous is None:
            return self.poll_interval
        return min(self.max_poll_interval, max(self.poll_interval, previous * self.backoff))
