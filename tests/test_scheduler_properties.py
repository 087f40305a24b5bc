"""Properties of the scheduler, over random batches (hypothesis)."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amlwait.core.budget import RequestBudget
from amlwait.core.clock import VirtualClock
from amlwait.core.policy import PollPolicy
from amlwait.testing import FakeJobSource
from amlwait.waiter import WaitOptions, wait_for_jobs

STATUSES = [
    "Queued",
    "Preparing",
    "Running",
    "Finalizing",
    "NotResponding",
    "Unknown",
    "Completed",
    "Failed",
    "Canceled",
    None,
]

timelines = st.lists(
    st.tuples(st.floats(0, 20_000, allow_nan=False), st.sampled_from(STATUSES)),
    min_size=1,
    max_size=6,
).map(lambda entries: sorted(entries, key=lambda e: e[0]))


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    poll = draw(st.floats(1, 60))
    return {
        "timelines": draw(st.lists(timelines, min_size=1, max_size=25)),
        "poll": poll,
        "max_poll": poll * draw(st.floats(1, 10)),
        "timeout": draw(st.floats(0, 30_000)),
        "rate": draw(st.floats(0.5, 20)),
        "burst": draw(st.integers(1, 30)),
        "tag": draw(st.booleans()),
        "page": draw(st.integers(1, 10)),
        "fail_fast": draw(st.booleans()),
    }


def play(scenario: dict[str, object]) -> tuple[FakeJobSource, object, VirtualClock, float]:
    clock = VirtualClock()
    budget = RequestBudget(rate=float(scenario["rate"]), burst=float(scenario["burst"]))  # type: ignore[arg-type]
    source = FakeJobSource(clock, budget=budget, page_size=int(scenario["page"]))  # type: ignore[call-overload]
    for index, timeline in enumerate(scenario["timelines"]):  # type: ignore[arg-type]
        source.add_job(f"J{index}", timeline, tags={"batch": ""} if index % 3 else {})
    options = WaitOptions(
        timeout=float(scenario["timeout"]),  # type: ignore[arg-type]
        policy=PollPolicy(
            poll_interval=float(scenario["poll"]),  # type: ignore[arg-type]
            max_poll_interval=float(scenario["max_poll"]),  # type: ignore[arg-type]
            not_found_grace=600,
            suspect_grace=900,
        ),
        fail_fast=bool(scenario["fail_fast"]),
    )
    start = clock.now()
    result = asyncio.run(
        wait_for_jobs(
            source.refs(),
            source=source,
            clock=clock,
            options=options,
            tag="batch" if scenario["tag"] else None,
        )
    )
    return source, result, clock, start


COMMON = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(scenarios())
def test_no_job_is_read_twice_within_the_poll_interval(scenario: dict[str, object]) -> None:
    """No job is fetched (GET) twice within the poll interval, and no batch is listed
    twice within it (a LIST reads every job of the batch at once)."""
    source, _, _, _ = play(scenario)
    poll = float(scenario["poll"])  # type: ignore[arg-type]
    for index in range(len(scenario["timelines"])):  # type: ignore[arg-type]
        gets = [r.at for r in source.requests if r.kind == "get" and r.job == f"J{index}"]
        gaps = [b - a for a, b in itertools.pairwise(gets)]
        assert all(gap >= poll - 1e-6 for gap in gaps), (index, gaps)
    listings = [r.at for r in source.requests if r.kind == "list"]
    gaps = [b - a for a, b in itertools.pairwise(listings)]
    assert all(gap >= poll - 1e-6 for gap in gaps), ("list", gaps)


@COMMON
@given(scenarios())
def test_requests_never_exceed_the_budget(scenario: dict[str, object]) -> None:
    source, _, _, _ = play(scenario)
    rate, burst = float(scenario["rate"]), int(scenario["burst"])  # type: ignore[arg-type]
    sent = ("get", "list", "list-next", "put", "cancel")
    stamps = sorted(r.at for r in source.requests if r.kind in sent)
    times = [t - stamps[0] for t in stamps]  # small numbers keep the float error small
    # In any window [t_i, t_j] at most burst + rate * (t_j - t_i) requests start, i.e.
    # (j + 1 - rate * t_j) + max over i <= j of (rate * t_i - i) <= burst: checked in O(n).
    best = float("-inf")
    for j, t_j in enumerate(times):
        best = max(best, rate * t_j - j)
        assert (j + 1 - rate * t_j) + best <= burst + 1e-6, (j, t_j)


@COMMON
@given(scenarios())
def test_the_wait_never_sleeps_past_its_deadline(scenario: dict[str, object]) -> None:
    _source, result, clock, start = play(scenario)
    timeout = float(scenario["timeout"])  # type: ignore[arg-type]
    first_pass = len(scenario["timelines"]) / float(scenario["rate"]) + 1  # type: ignore[arg-type]
    assert clock.now() <= start + max(timeout, first_pass) + 1e-6
    assert result.ended_at <= start + max(timeout, first_pass) + 1e-6  # type: ignore[attr-defined]
