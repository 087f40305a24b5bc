"""The MLflow change schedule: which searches a wake makes, what an answer means."""

from __future__ import annotations

import pytest

from amlwait.core.changes import (
    OVERLAP_MS,
    ChangeSchedule,
    RunSearch,
    SeenRun,
    quote_value,
    run_id_filter,
    tag_filter,
)
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.status import Outcome
from amlwait.core.tracker import JobState

WS = WorkspaceRef("sub", "rg", "ws")
OTHER = WorkspaceRef("sub", "rg", "other")
TAG = "amlwait-batch-x"


def jobs(count: int, workspace: WorkspaceRef = WS) -> list[JobState]:
    return [JobState(ref=JobRef(workspace, f"J{i:03d}")) for i in range(count)]


def experiments(states: list[JobState], name: str = "exp") -> dict[str, str]:
    return {job.name: name for job in states}


def test_nothing_is_searched_before_it_is_due_or_for_jobs_of_unknown_experiment() -> None:
    schedule = ChangeSchedule(tag=None, interval=20.0)
    states = jobs(3)
    # Due, but no experiment known: nothing to send, and the slot is used all the same
    # (a caller polling at every wake never spins on it).
    assert schedule.plan(states, {}, {}, 100.0) == []
    assert schedule.next_search == 120.0
    assert schedule.plan(states, experiments(states), {}, 119.9) == []
    assert len(schedule.plan(states, experiments(states), {}, 120.0)) == 1
    assert schedule.next_search == 140.0


def test_with_a_tag_one_search_per_workspace_and_value_ordered_by_end_time() -> None:
    schedule = ChangeSchedule(tag=TAG, interval=20.0, page_size=50)
    states = jobs(300) + jobs(2, OTHER)
    values = {job.name: "300" for job in states}
    searches = schedule.plan(states, experiments(states), values, 0.0)
    assert [s.workspace for s in searches] == [WS, OTHER]
    first = searches[0]
    assert first.filter == "tags.`amlwait-batch-x` = '300'"
    assert first.order_by == ("end_time DESC",)
    assert first.max_results == 50 and first.by_tag and first.experiments == ("exp",)


def test_without_a_tag_the_unfinished_jobs_are_searched_by_run_id_in_batches() -> None:
    schedule = ChangeSchedule(tag=None, batch_size=100)
    states = jobs(250)
    states[1].finished_at = 5.0
    states[1].outcome = Outcome.SUCCEEDED
    searches = schedule.plan(states, experiments(states), {}, 0.0)
    assert [s.max_results for s in searches] == [100, 100, 49]
    assert searches[0].filter.startswith("attributes.run_id IN ('J000', 'J002', ")
    assert "'J001'" not in "".join(s.filter for s in searches)


def test_an_answer_wakes_only_unfinished_jobs_of_the_wait_that_mlflow_says_ended() -> None:
    schedule = ChangeSchedule(tag=None)
    states = {job.name: job for job in jobs(3)}
    search = RunSearch(WS, ("exp",), run_id_filter(list(states)), 3)
    runs = [
        SeenRun("J000", "FINISHED", 1_000),
        SeenRun("J001", "RUNNING"),  # NotResponding, Paused... are RUNNING too: not ended
        SeenRun("J002", "KILLED", 2_000),
        SeenRun("NOT_OURS", "FAILED", 3_000),
    ]
    result = schedule.take(search, runs, None, states)
    assert result.ended == ("J000", "J002")
    assert result.next_page is None


def _tag_search(schedule: ChangeSchedule) -> RunSearch:
    states = jobs(1)
    (search,) = schedule.plan(states, experiments(states), {"J000": "1"}, 0.0)
    return search


def test_paging_stops_below_the_watermark_of_the_previous_search() -> None:
    schedule = ChangeSchedule(tag=TAG, page_size=2)
    search = _tag_search(schedule)
    ours: dict[str, JobState] = {}
    # First search: two ended runs, a next page, nothing known yet: read on.
    page = schedule.take(
        search, [SeenRun("A", "FINISHED", 900_000), SeenRun("B", "FAILED", 800_000)], "2", ours
    ).next_page
    assert page is not None and page.page_token == "2"
    # A run without an end time: the ended ones are all read (MLflow sorts them last).
    assert (
        schedule.take(page, [SeenRun("C", "RUNNING"), SeenRun("D", "RUNNING")], "4", ours).next_page
        is None
    )
    # Next search: the newest end is the watermark; a run ended well before it stops it.
    old = 900_000 - OVERLAP_MS - 1
    result = schedule.take(
        search, [SeenRun("E", "FINISHED", 950_000), SeenRun("A", "FINISHED", old)], "2", ours
    )
    assert result.next_page is None
    # Inside the overlap, paging goes on.
    near = 950_000 - OVERLAP_MS + 1
    more = schedule.take(
        search, [SeenRun("F", "FINISHED", 960_000), SeenRun("E", "FINISHED", near)], "2", ours
    )
    assert more.next_page is not None


def test_an_order_that_is_not_mlflows_makes_every_later_search_read_every_page() -> None:
    schedule = ChangeSchedule(tag=TAG, page_size=2)
    search = _tag_search(schedule)
    # An ended run after one without an end time: runs without one do not sort last here.
    page = schedule.take(
        search, [SeenRun("A", "RUNNING"), SeenRun("B", "FINISHED", 5)], "2", {}
    ).next_page
    assert page is not None
    assert (
        schedule.take(search, [SeenRun("C", "RUNNING"), SeenRun("D", "RUNNING")], "2", {}).next_page
        is not None
    )
    assert schedule.take(search, [SeenRun("C", "RUNNING")], None, {}).next_page is None


def test_filter_literals_are_quoted_or_refused() -> None:
    assert quote_value("a'b") == '"a\'b"'
    assert tag_filter("k.with.dots", "v") == "tags.`k.with.dots` = 'v'"
    with pytest.raises(ValueError, match="both quote"):
        quote_value("a'\"b")
    with pytest.raises(ValueError, match="backquote"):
        tag_filter("a`b", "v")
    with pytest.raises(ValueError):
        ChangeSchedule(tag=None, interval=0)
