"""The simulator's pipeline timeline: one sweep gives what re-deriving at every change did."""

from __future__ import annotations

import random
from collections.abc import Sequence

from bench.sim import _pipeline_timeline

from amlwait.core.pipeline import derive_pipeline_status
from amlwait.core.status import JobStatus

STATUSES = ["Queued", "Preparing", "Running", "Completed", "Failed", "Canceled", None]


def at_every_change(
    start: float, steps: Sequence[Sequence[tuple[float, str | None]]]
) -> list[tuple[float, str | None]]:
    """The definition: the derived status at each moment any step changes."""

    def status_at(timeline: Sequence[tuple[float, str | None]], at: float) -> str:
        current = JobStatus.NOT_STARTED.value
        for offset, status in timeline:
            if offset > at:
                break
            current = status or current
        return current

    changes = sorted({start, *(at for timeline in steps for at, _ in timeline if at > start)})
    entries: list[tuple[float, str | None]] = []
    for at in changes:
        status = derive_pipeline_status(
            JobStatus.RUNNING.value,
            [status_at(timeline, at) for timeline in steps],
            continue_on_step_failure=True,
        ).status
        if not entries or entries[-1][1] != status:
            entries.append((at, status))
    return entries


def test_the_sweep_equals_the_definition_on_random_timelines() -> None:
    rng = random.Random(5)
    for _ in range(300):
        steps = []
        for _ in range(rng.randint(1, 12)):
            moments = sorted(rng.choice([0.0, 5.0, 10.0, rng.uniform(0, 50)]) for _ in range(4))
            timeline = [(at, rng.choice(STATUSES)) for at in moments]
            if rng.random() < 0.8:
                timeline.append((moments[-1] + rng.uniform(0, 20), rng.choice(STATUSES[3:6])))
            steps.append(timeline)
        start = rng.choice([0.0, 5.0, 7.5])
        assert _pipeline_timeline(start, steps) == at_every_change(start, steps)


def test_ten_thousand_steps_are_one_sweep() -> None:
    steps = [
        [(0.0, "Queued"), (10.0 + i, "Running"), (100.0 + i, "Failed" if i == 7 else "Completed")]
        for i in range(10_000)
    ]
    timeline = _pipeline_timeline(0.0, steps)
    assert timeline == [(0.0, "Running"), (100.0 + 9_999, "Failed")]
