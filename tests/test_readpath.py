"""``--read-path``: the MLflow read path against the scripted workspace over loopback.

Requests are counted from the workspace's own request log: one ``runs/search`` per poll,
one ARM GET per run that ended, ARM only (with one line saying why) when the search is
refused, hangs or the workspace has no tracking URI. ``auto`` is ``amlwait wait``'s
default; a one-shot check (``--timeout 0``) costs what ``--read-path arm`` costs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from amlwait.azureml.arm import ArmJobSource
from amlwait.azureml.credentials import StaticToken
from amlwait.core.clock import VirtualClock
from amlwait.core.jobs import JobRef
from amlwait.core.tracker import BatchOutcome
from amlwait.readpath import FIRST_SEARCH_SECONDS, mlflow_waiter
from amlwait.result import WaitResult
from amlwait.workspace import ScriptedWorkspace, tracking
from amlwait.workspace.faults import FaultKind
from amlwait.workspace.requestlog import RequestRecord
from tests.helpers import FAST, WS, amlwait, manifest

TAG = "amlwait-batch-readpath"
JOBS = 20
SEARCH_INTERVAL = 20.0  # the default poll interval (15 s) x SEARCH_SHARE


def _ends(i: int) -> float:
    return 300.0 + 30.0 * i


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def workspace(clock: VirtualClock) -> Iterator[ScriptedWorkspace]:
    ws = ScriptedWorkspace(clock)
    for i in range(JOBS):
        final = "Failed" if i == 7 else "Completed"
        ws.add_job(
            WS,
            f"RP_{i:02d}",
            [(0, "Queued"), (60, "Running"), (_ends(i), final)],
            tags={TAG: str(JOBS)},
        )
    with ws:
        yield ws


def _wait(
    ws: ScriptedWorkspace,
    clock: VirtualClock,
    *,
    tag: str | None,
    mode: str,
    notes: list[str],
    request_timeout: float = 30.0,
) -> WaitResult:
    refs = [JobRef(WS, f"RP_{i:02d}") for i in range(JOBS)]

    async def main() -> WaitResult:
        async with ArmJobSource(
            endpoint=ws.endpoint,
            credential=StaticToken("t"),
            clock=clock,
            request_timeout=request_timeout,
        ) as source:
            waiter = mlflow_waiter(refs, source, mode=mode, note=notes.append, tag=tag, clock=clock)
            return await waiter.run()

    return asyncio.run(main())


def _kinds(requests: list[RequestRecord]) -> dict[str, Any]:
    searches = [r for r in requests if r.path.endswith("/runs/search")]
    listings = [r for r in requests if r.method == "GET" and r.path.endswith("/jobs")]
    gets = Counter(
        r.path.rsplit("/", 1)[1]
        for r in requests
        if r.method == "GET" and "/jobs/" in r.path and "/mlflow/" not in r.path
    )
    return {"searches": searches, "listings": listings, "gets": gets}


def _check_detection(result: WaitResult, ws: ScriptedWorkspace) -> None:
    jobs = {job.name: job for job in result.jobs}
    for i in range(JOBS):
        job = jobs[f"RP_{i:02d}"]
        assert job.finished_at is not None
        # Found by the next search after the end, then one GET.
        assert job.finished_at - (ws.start_time + _ends(i)) <= SEARCH_INTERVAL + 2.0
    assert jobs["RP_07"].status == "Failed"
    assert result.outcome is BatchOutcome.FAILED


def test_with_a_tag_one_search_a_poll_and_one_arm_get_per_ended_run(
    workspace: ScriptedWorkspace, clock: VirtualClock
) -> None:
    notes: list[str] = []
    result = _wait(workspace, clock, tag=TAG, mode="mlflow", notes=notes)
    _check_detection(result, workspace)
    kinds = _kinds(workspace.requests)
    duration = result.ended_at - result.started_at
    polls = duration / SEARCH_INTERVAL
    # One search (one page) per poll, whatever ended: never more.
    assert polls - 2 <= len(kinds["searches"]) <= polls + 2
    # The first read is one ARM listing; the safety net (30 min) never came due.
    assert len(kinds["listings"]) == 1
    # Each job ARM confirmed once, by one GET, before it was reported.
    assert set(kinds["gets"].values()) == {1}
    assert len(kinds["gets"]) == JOBS
    assert notes == []


def test_without_a_tag_batched_run_id_searches_replace_a_get_per_job_per_poll(
    workspace: ScriptedWorkspace, clock: VirtualClock
) -> None:
    notes: list[str] = []
    result = _wait(workspace, clock, tag=None, mode="mlflow", notes=notes)
    _check_detection(result, workspace)
    kinds = _kinds(workspace.requests)
    polls = (result.ended_at - result.started_at) / SEARCH_INTERVAL
    assert polls - 2 <= len(kinds["searches"]) <= polls + 2  # 20 ids fit one search
    assert all(
        "attributes.run_id IN" in r.query.get("filter", "attributes.run_id IN")
        for r in kinds["searches"]
    )
    # The first read by GET (it names the experiment), then one GET when it ended.
    assert set(kinds["gets"].values()) == {2}
    assert kinds["listings"] == []


def test_auto_falls_back_to_arm_with_one_line_when_the_search_keeps_failing(
    workspace: ScriptedWorkspace, clock: VirtualClock
) -> None:
    workspace.faults.add(
        "500", match=lambda record: record.path.endswith("/runs/search"), times=10**6
    )
    notes: list[str] = []
    result = _wait(workspace, clock, tag=TAG, mode="auto", notes=notes)
    assert result.outcome is BatchOutcome.FAILED
    assert {job.name for job in result.jobs if job.finished} == {f"RP_{i:02d}" for i in range(20)}
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "reading ARM only" in notes[0] and "MLflow search" in notes[0]
    kinds = _kinds(workspace.requests)
    # One search, retried for FIRST_SEARCH_SECONDS (backoff 1, 2, 4, 8, 16 s: 5 attempts),
    # then no more of ours; ARM's own listing took over. (The run reader's own searches
    # for ended runs' times hit the fault too, but only once jobs end, from 300 s on.)
    probe = [r for r in kinds["searches"] if r.time < workspace.start_time + 300.0]
    assert 3 <= len(probe) <= 6
    assert probe[-1].time - probe[0].time <= FIRST_SEARCH_SECONDS
    assert len(kinds["listings"]) > 5


def _read_path_searches_before(
    ws: ScriptedWorkspace, start: float, end: float
) -> Callable[[RequestRecord], bool]:
    """A fault matcher: the read path's searches from ``start`` to ``end`` (virtual s)."""

    def match(record: RequestRecord) -> bool:
        offset = record.time - ws.start_time
        # Jobs end from 300 s on; only then does the run reader search for their times.
        return record.path.endswith("/runs/search") and start <= offset < min(end, 300.0)

    return match


@pytest.mark.parametrize("kind", ["401", "500", "hang"])
def test_auto_reads_arm_with_one_line_when_the_first_search_fails_and_the_wait_ends_right(
    workspace: ScriptedWorkspace, clock: VirtualClock, kind: FaultKind
) -> None:
    workspace.faults.add(kind, match=_read_path_searches_before(workspace, 0.0, 300.0), times=10**6)
    notes: list[str] = []
    # A short request time limit keeps the hanging case fast on the real clock (a hung
    # search is cut after 0.3 s, then retried on the virtual clock's backoff).
    result = _wait(workspace, clock, tag=TAG, mode="auto", notes=notes, request_timeout=0.3)
    assert len(notes) == 1 and "\n" not in notes[0], notes
    assert notes[0].startswith("amlwait: reading ARM only (--read-path auto): the MLflow search")
    _check_arm_took_over(result, workspace)


def _check_arm_took_over(result: WaitResult, ws: ScriptedWorkspace) -> None:
    """Every job read to its end (RP_07 Failed), each seen within an ARM poll of it."""
    assert result.outcome is BatchOutcome.FAILED
    jobs = {job.name: job for job in result.jobs}
    assert all(job.finished for job in jobs.values())
    assert jobs["RP_07"].status == "Failed"
    for i in range(JOBS):
        finished_at = jobs[f"RP_{i:02d}"].finished_at
        assert finished_at is not None
        # ARM's own policy again: listed within --max-poll-interval (120 s) of the end.
        assert finished_at - (ws.start_time + _ends(i)) <= 120.0 + 2.0


def test_auto_reads_arm_with_one_line_when_searches_that_answered_start_failing(
    workspace: ScriptedWorkspace, clock: VirtualClock
) -> None:
    # The first searches answer; from 100 s on every search fails (8 attempts, ~2 min):
    # auto goes on with ARM alone rather than end the wait.
    workspace.faults.add(
        "500", match=_read_path_searches_before(workspace, 100.0, 300.0), times=10**6
    )
    notes: list[str] = []
    result = _wait(workspace, clock, tag=TAG, mode="auto", notes=notes)
    assert len(notes) == 1 and "MLflow search was refused" in notes[0], notes
    searches = _kinds(workspace.requests)["searches"]
    assert any(r.time - workspace.start_time < 100.0 and r.status == 200 for r in searches)
    _check_arm_took_over(result, workspace)


@pytest.fixture
def no_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tracking.workspace_document

    def without_mlflow(*args: Any, **kwargs: Any) -> dict[str, Any]:
        document = plain(*args, **kwargs)
        del document["properties"]["mlFlowTrackingUri"]
        return document

    monkeypatch.setattr(tracking, "workspace_document", without_mlflow)


@pytest.mark.usefixtures("no_tracking_uri")
def test_auto_reads_arm_only_when_the_workspace_has_no_tracking_uri(
    workspace: ScriptedWorkspace, clock: VirtualClock
) -> None:
    notes: list[str] = []
    result = _wait(workspace, clock, tag=TAG, mode="auto", notes=notes)
    assert result.outcome is BatchOutcome.FAILED
    assert notes == [
        f"amlwait: reading ARM only (--read-path auto): workspace {WS} advertises no MLflow "
        "tracking URI"
    ]
    assert _kinds(workspace.requests)["searches"] == []


def _cli_wait(
    tmp_path: Any, *flags: str, end: float = 6.0
) -> tuple[Any, list[RequestRecord], float]:
    """``amlwait wait`` over two tagged jobs that end at ``end`` s: the finished process,
    the workspace's request log and its start time."""
    with ScriptedWorkspace() as ws:
        for name in ("RP_CLI_A", "RP_CLI_B"):
            ws.add_job(WS, name, [(0, "Running"), (end, "Completed")], tags={TAG: "2"})
        path = manifest(tmp_path, {"jobs": ["RP_CLI_A", "RP_CLI_B"], "tag": TAG})
        done = amlwait("wait", path, *flags, *FAST, endpoint=ws.endpoint)
        return done, ws.requests, ws.start_time


@pytest.mark.usefixtures("no_tracking_uri")
def test_amlwait_wait_by_default_reads_arm_with_one_line_without_a_tracking_uri(
    tmp_path: Any,
) -> None:
    done, requests, _ = _cli_wait(tmp_path, end=1.0)
    assert done.returncode == 0, done.stdout + done.stderr
    notes = [line for line in done.stdout.splitlines() if "reading ARM only" in line]
    assert notes == [
        f"amlwait: reading ARM only (--read-path auto): workspace {WS} advertises no MLflow "
        "tracking URI"
    ]
    assert _kinds(requests)["searches"] == []


def test_amlwait_wait_reads_by_mlflow_search_by_default(tmp_path: Any) -> None:
    done, requests, start = _cli_wait(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reading ARM only" not in done.stdout
    kinds = _kinds(requests)
    # Searches before the jobs end (6 s) are the read path's: the run reader searches
    # only for the times of ended runs.
    early = [r for r in kinds["searches"] if r.time < start + 5.0]
    assert early, "the default (auto) sent no MLflow search while the jobs ran"
    # ARM confirms each end MLflow reported by one GET (listings: the safety net only).
    assert set(kinds["gets"]) <= {"RP_CLI_A", "RP_CLI_B"}
    assert all(count <= 1 for count in kinds["gets"].values())


def _one_shot(tmp_path: Any, *read_path: str) -> list[tuple[str, str]]:
    """The requests of ``amlwait wait --timeout 0`` over two running jobs (tagged)."""
    with ScriptedWorkspace() as ws:
        for name in ("RP_ONE_A", "RP_ONE_B"):
            ws.add_job(WS, name, [(0, "Running")], tags={TAG: "2"})
        path = manifest(tmp_path, {"jobs": ["RP_ONE_A", "RP_ONE_B"], "tag": TAG})
        done = amlwait("wait", path, "--timeout", "0", *read_path, endpoint=ws.endpoint)
        requests = ws.requests
    assert done.returncode == 3, done.stdout + done.stderr
    assert "reading ARM only" not in done.stdout
    return sorted((r.method, r.path) for r in requests)


def test_a_one_shot_check_by_default_sends_no_mlflow_request_and_what_arm_sends(
    tmp_path: Any,
) -> None:
    default = _one_shot(tmp_path)
    assert default == _one_shot(tmp_path, "--read-path", "arm")
    assert [path for _, path in default if "/mlflow/" in path] == []
    # Not even the workspace resource (where the tracking URI is named) is read.
    assert [path for _, path in default if path.endswith(f"/workspaces/{WS.workspace}")] == []
    assert len(default) == 1  # one listing of the batch


@pytest.mark.usefixtures("no_tracking_uri")
def test_read_path_mlflow_without_a_tracking_uri_is_one_line_and_exit_2(
    tmp_path: Any,
) -> None:
    with ScriptedWorkspace() as ws:
        ws.add_job(WS, "RP_CLI", [(0, "Running")])
        path = manifest(tmp_path, {"jobs": ["RP_CLI"]})
        done = amlwait(
            "wait", path, "--read-path", "mlflow", "--timeout", "1m", endpoint=ws.endpoint
        )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "advertises no MLflow tracking URI" in lines[0] and "--read-path arm" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_amlwait_wait_read_path_mlflow_finds_the_ends_by_search(tmp_path: Any) -> None:
    done, requests, _ = _cli_wait(tmp_path, "--read-path", "mlflow")
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = _kinds(requests)
    assert kinds["searches"], "no MLflow search was sent"
    assert set(kinds["gets"]) <= {"RP_CLI_A", "RP_CLI_B"}
    assert all(count <= 1 for count in kinds["gets"].values())
