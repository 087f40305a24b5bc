"""Reasons and true run times, read from run history and MLflow over real HTTP on loopback
(the scripted workspace; the local workspace in test_demo)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from amlwait.azureml.arm import ArmJobSource
from amlwait.azureml.credentials import StaticToken
from amlwait.azureml.tracking import SEARCH_CHUNK, mlflow_base_url, parse_utc
from amlwait.console import summary_lines
from amlwait.core.clock import SystemClock
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.tracker import BatchOutcome
from amlwait.devops.html import render_html
from amlwait.devops.junit import render_junit
from amlwait.devops.reporter import job_issue
from amlwait.devops.summary import render_summary
from amlwait.result import WaitResult
from amlwait.waiter import WaitOptions, wait_for_jobs
from amlwait.workspace import ScriptedWorkspace
from tests.helpers import amlwait, manifest

WS = WorkspaceRef("00000000-0000-0000-0000-0000000000a1", "rg-1", "ws-1")
REASON = "sensor table plant002_c01_missing does not exist"
FAILED = "PLANT002_CIRCUIT01_2026_01_05"


@pytest.fixture
def workspace() -> Iterator[ScriptedWorkspace]:
    with ScriptedWorkspace(SystemClock()) as scripted:
        yield scripted


def wait(workspace: ScriptedWorkspace, refs: list[JobRef], **options: Any) -> WaitResult:
    async def main() -> WaitResult:
        async with ArmJobSource(
            endpoint=workspace.endpoint, credential=StaticToken("test-token")
        ) as source:
            return await wait_for_jobs(refs, source=source, options=WaitOptions(**options))

    return asyncio.run(main())


def data_plane(workspace: ScriptedWorkspace) -> dict[str, list[Any]]:
    """The workspace's request log by kind of run-history/MLflow read."""
    kinds: dict[str, list[Any]] = {
        "workspace": [],
        "discovery": [],
        "details": [],
        "experiment": [],
        "search": [],
    }
    for record in workspace.requests:
        if record.path.rstrip("/").endswith(WS.arm_path):
            kinds["workspace"].append(record)
        elif record.path.endswith("/discovery"):
            kinds["discovery"].append(record)
        elif record.path.endswith("/details"):
            kinds["details"].append(record)
        elif record.path.endswith("/experiments/get-by-name"):
            kinds["experiment"].append(record)
        elif record.path.endswith("/runs/search"):
            kinds["search"].append(record)
    return kinds


def script_batch(workspace: ScriptedWorkspace, completed: int, failed: int) -> list[JobRef]:
    refs = [
        workspace.add_job(WS, f"OK{i:03d}", [(0, "Running"), (0.2, "Completed")])
        for i in range(completed)
    ]
    refs += [
        workspace.add_job(
            WS,
            f"{FAILED}_{i}" if i else FAILED,
            [(0, "Queued"), (0.1, "Running"), (0.4, "Failed")],
            failure=("UserError", f"Execution failed. Error: error: {REASON}"),
        )
        for i in range(failed)
    ]
    return refs


# -- the reader's pieces -----------------------------------------------------------------


def test_tracking_uris_map_as_the_sdk_does() -> None:
    assert (
        mlflow_base_url("azureml://eastus.api.azureml.ms/mlflow/v1.0/subscriptions/s/")
        == "https://eastus.api.azureml.ms/mlflow/v1.0/subscriptions/s"
    )
    assert mlflow_base_url("http://127.0.0.1:9/mlflow/v1.0/x") == "http://127.0.0.1:9/mlflow/v1.0/x"
    # .NET writes seven fraction digits; Python reads six.
    assert parse_utc("2026-01-05T03:14:07.1234567Z") == pytest.approx(1767582847.123456)
    assert parse_utc("not a time") is None


# -- every surface -------------------------------------------------------------------------


def test_a_failed_jobs_reason_and_run_time_reach_every_report(workspace) -> None:
    refs = script_batch(workspace, completed=1, failed=1)
    result = wait(workspace, refs, policy=_fast())
    assert result.outcome is BatchOutcome.FAILED
    bad = next(job for job in result.jobs if job.name == FAILED)
    assert (bad.error_code, bad.reason) == (
        "UserError",
        f"Execution failed. Error: error: {REASON}",
    )
    # The scripted timeline: Running at 0.1 s, Failed at 0.4 s → it ran 0.3 s.
    assert bad.ended_at is not None and bad.started_at is not None
    assert bad.ended_at - bad.started_at == pytest.approx(0.3, abs=0.01)

    table = "\n".join(summary_lines(result))
    assert f"UserError: Execution failed. Error: error: {REASON}" in table
    assert any(line.startswith(FAILED) and " 0.3s " in line for line in table.splitlines())
    issue = job_issue(bad)
    assert issue.startswith(f"{FAILED} failed after 0.3s: UserError: ") and REASON in issue
    junit = render_junit(result)
    assert f'message="UserError: Execution failed. Error: error: {REASON}"' in junit
    assert "ran: 0.3s (start to end, as Azure ML recorded them)" in junit
    summary = render_summary(result)
    assert REASON.replace("_", "\\_") in summary and "| 0.3s |" in summary
    page = render_html(result)
    assert f"— ran 0.3s — UserError: Execution failed. Error: error: {REASON}</title>" in page
    assert '<td class="num">0.3s</td>' in page
    document = result.to_json()
    row = next(job for job in document["jobs"] if job["name"] == FAILED)
    assert row["reason"] == f"Execution failed. Error: error: {REASON}"
    assert row["error_code"] == "UserError"
    assert row["run_seconds"] == pytest.approx(0.3, abs=0.01)
    assert row["times_from"] == "service"
    assert row["started_at"].endswith("Z") and row["ended_at"].endswith("Z")
    ok = next(job for job in document["jobs"] if job["name"] == "OK000")
    assert ok["reason"] is None and ok["error_code"] is None
    assert ok["run_seconds"] == pytest.approx(0.2, abs=0.01)


def test_the_cli_says_why_in_the_table_the_log_issues_and_the_json(workspace, tmp_path) -> None:
    script_batch(workspace, completed=1, failed=1)
    out = tmp_path / "r.json"
    result = amlwait(
        "wait",
        manifest(tmp_path, {"jobs": ["OK000", FAILED]}),
        "--poll-interval",
        "0.05s",
        "--max-poll-interval",
        "0.2s",
        "--json",
        str(out),
        endpoint=workspace.endpoint,
        env={"TF_BUILD": "True", "AGENT_TEMPDIRECTORY": str(tmp_path)},
    )
    assert result.returncode == 1, result.stderr
    issues = [line for line in result.stdout.splitlines() if "logissue type=error" in line]
    assert len(issues) == 1
    assert (
        f"]{FAILED} failed after 0.3s: UserError: Execution failed. Error: error: {REASON}"
        in (issues[0])
    )
    assert f"    UserError: Execution failed. Error: error: {REASON}" in result.stdout.splitlines()
    row = next(job for job in json.loads(out.read_text())["jobs"] if job["name"] == FAILED)
    assert row["error_code"] == "UserError" and REASON in row["reason"]


# -- jobs that ended before the wait ------------------------------------------------------


def test_a_job_that_ended_before_the_wait_shows_its_run_time_not_its_age() -> None:
    with ScriptedWorkspace(SystemClock()) as workspace:
        # Created 300 s before the wait, ran 4 s (Running at -290 s, Completed at -286 s).
        workspace.start_time = workspace.backend.start_time = time.time() - 300
        ref = workspace.add_job(WS, "OLD", [(0, "Queued"), (10, "Running"), (14, "Completed")])
        result = wait(workspace, [ref], policy=_fast())
    assert len(result.jobs) == 1
    assert result.outcome is BatchOutcome.SUCCEEDED
    row = result.to_json()["jobs"][0]
    assert row["run_seconds"] == pytest.approx(4.0, abs=0.01)
    assert row["queued_seconds"] == pytest.approx(10.0, abs=1.0)
    lines = summary_lines(result)
    assert any(line.startswith("OLD") and " 4s " in line for line in lines)
    assert not any("~" in line for line in lines if line.startswith("OLD"))


# -- the count of extra requests ------------------------------------------------------------


def test_extra_requests_are_one_discovery_one_per_failed_job_and_chunked_searches(
    workspace,
) -> None:
    refs = script_batch(workspace, completed=SEARCH_CHUNK + 20, failed=3)
    result = wait(workspace, refs, policy=_fast())
    assert result.outcome is BatchOutcome.FAILED
    kinds = data_plane(workspace)
    assert len(kinds["workspace"]) == 1 and len(kinds["discovery"]) == 1
    assert len(kinds["details"]) == 3
    assert len(kinds["experiment"]) == 1
    untimed = SEARCH_CHUNK + 20  # the failed jobs got their times with their details
    assert len(kinds["search"]) == math.ceil(untimed / SEARCH_CHUNK) == 2
    assert all(job.started_at is not None for job in result.jobs)
    assert result.requests == len(workspace.requests)


# -- refusals never fail the wait ------------------------------------------------------------


def _is_data_plane(record: Any) -> bool:
    return "/history/" in record.path or "/mlflow/" in record.path


@pytest.mark.parametrize("kind", ["401", "403", "404", "500", "drop"])
def test_a_refused_run_history_says_reason_unavailable_and_changes_nothing_else(
    workspace, kind: Any
) -> None:
    refs = script_batch(workspace, completed=1, failed=1)
    workspace.faults.add(kind, match=_is_data_plane, times=100)
    result = wait(workspace, refs, policy=_fast())
    assert result.outcome is BatchOutcome.FAILED
    bad = next(job for job in result.jobs if job.name == FAILED)
    assert bad.reason is not None and bad.reason.startswith("reason unavailable (")
    assert bad.error_code is None and bad.started_at is None
    assert "reason unavailable" in job_issue(bad)
    # Times fall back to what amlwait saw, labelled so.
    ok = next(job for job in result.to_json()["jobs"] if job["name"] == "OK000")
    assert ok["times_from"] == "amlwait" and ok["run_seconds"] is None
    assert any(line.startswith("OK000") and "~" in line for line in summary_lines(result))


def test_a_hanging_run_history_does_not_hold_the_wait_past_its_budget(workspace) -> None:
    refs = script_batch(workspace, completed=1, failed=1)
    workspace.faults.add("slow", match=_is_data_plane, times=100, delay=30.0)
    started = time.monotonic()
    result = wait(workspace, refs, policy=_fast(), run_facts_budget=1.0)
    took = time.monotonic() - started
    assert result.outcome is BatchOutcome.FAILED
    assert took < 6.0, f"the wait took {took:.1f}s"
    bad = next(job for job in result.jobs if job.name == FAILED)
    assert bad.reason is not None and bad.reason.startswith("reason unavailable (")


def test_reads_past_the_deadline_are_not_made(workspace) -> None:
    refs = script_batch(workspace, completed=0, failed=1)
    refs.append(workspace.add_job(WS, "SLOW", [(0, "Running")]))
    workspace.faults.add("slow", match=_is_data_plane, times=100, delay=30.0)
    started = time.monotonic()
    result = wait(workspace, refs, policy=_fast(), timeout=1.5, run_facts_budget=20.0)
    took = time.monotonic() - started
    assert result.outcome is BatchOutcome.FAILED
    assert took < 5.0, f"the wait took {took:.1f}s past a 1.5 s deadline"


def _fast() -> Any:
    from amlwait.core.policy import PollPolicy

    return PollPolicy(poll_interval=0.05, max_poll_interval=0.2)
