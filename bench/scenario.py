"""The seeded batch of jobs every strategy waits for.

Each job's timeline (seconds from the start of the wait): NotStarted at 0, Queued after
20 s-3 min, Preparing after a log-normal queue time (median 5 min, at most 1 h), Running
after 1-10 min of preparation, then a heavy-tailed run (20 min x Pareto(1.1), at most
8 h), Finalizing for 30 s-3 min and Completed. ``FAILED_SHARE`` of the jobs fail part way
through the run instead; ``NOT_RESPONDING_SHARE`` go NotResponding for 2-10 min during
the run and recover.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

FAILED_SHARE = 0.03
NOT_RESPONDING_SHARE = 0.03
MIN_RUN = 20 * 60.0
MAX_RUN = 8 * 3600.0
TAG = "amlwait-batch-bench"
# Event Grid: seconds from a status change to its delivery (strategy "service").
EVENT_DELAY = (0.3, 2.0)


@dataclass(frozen=True)
class ScriptedJob:
    name: str
    timeline: tuple[tuple[float, str], ...]

    @property
    def ends_at(self) -> float:
        """Seconds from the start at which the job reaches its terminal status."""
        return self.timeline[-1][0]

    @property
    def final_status(self) -> str:
        return self.timeline[-1][1]


def make_jobs(
    n: int, seed: int, *, max_run: float = MAX_RUN, scale: float = 1.0
) -> list[ScriptedJob]:
    """``n`` jobs drawn from ``seed``; the same arguments give the same jobs.

    ``scale`` multiplies every time of every timeline (``--quick`` uses 0.1).
    """
    rng = random.Random(seed)
    jobs = [_job(f"BENCH_{i:05d}", rng, max_run) for i in range(n)]
    if scale == 1.0:
        return jobs
    return [
        ScriptedJob(job.name, tuple((at * scale, status) for at, status in job.timeline))
        for job in jobs
    ]


def _job(name: str, rng: random.Random, max_run: float) -> ScriptedJob:
    at = 0.0
    timeline: list[tuple[float, str]] = [(at, "NotStarted")]
    at += rng.uniform(20, 180)
    timeline.append((at, "Queued"))
    at += min(3600.0, rng.lognormvariate(math.log(300), 0.8))
    timeline.append((at, "Preparing"))
    at += rng.uniform(60, 600)
    timeline.append((at, "Running"))
    run = min(max_run, MIN_RUN * rng.paretovariate(1.1))
    fails = rng.random() < FAILED_SHARE
    if fails:
        run *= rng.uniform(0.05, 0.9)
    elif rng.random() < NOT_RESPONDING_SHARE:
        lost_at = at + run * rng.uniform(0.2, 0.7)
        lost_for = rng.uniform(120, 600)
        timeline += [(lost_at, "NotResponding"), (lost_at + lost_for, "Running")]
        run = max(run, lost_at + lost_for + 60 - at)
    at += run
    if fails:
        timeline.append((at, "Failed"))
    else:
        timeline.append((at, "Finalizing"))
        at += rng.uniform(30, 180)
        timeline.append((at, "Completed"))
    return ScriptedJob(name, tuple(timeline))
