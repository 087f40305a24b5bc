"""Real mode: command jobs run as local processes, and the state survives a restart."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from amlwait.core.jobs import JobRef
from amlwait.workspace import LocalWorkspace
from amlwait.workspace.runner import NO_EXIT_CODE_MESSAGE
from tests.workspace.helpers import (
    API_VERSION,
    WORKSPACE,
    arm_client,
    get,
    job_path,
    process_gone,
    put_job,
    read_when_written,
    run_error,
    status_of,
    wait_for_status,
    wait_until,
)

TERMINAL = {"Completed", "Failed", "Canceled"}


def test_exit_zero_completes_and_writes_the_log(
    local_workspace: LocalWorkspace, local_client: httpx.Client
) -> None:
    put_job(
        local_client,
        "job_ok",
        command='echo "run=$AZUREML_RUN_ID exp=$AZUREML_EXPERIMENT_NAME x=$EXTRA"; echo oops >&2',
        experimentName="exp1",
        environmentVariables={"EXTRA": "42"},
    )

    assert wait_for_status(local_client, "job_ok", TERMINAL) == "Completed"
    job = get(local_client, job_path("job_ok")).json()
    assert job["properties"]["properties"]["exitCode"] == "0"
    assert "error" not in job["properties"]
    log = local_workspace.log_path(JobRef(WORKSPACE, "job_ok")).read_text()
    assert "run=job_ok exp=exp1 x=42" in log
    assert "oops" in log


def test_non_zero_exit_fails_with_the_exit_code(local_client: httpx.Client) -> None:
    put_job(local_client, "job_exit3", command="exit 3")

    assert wait_for_status(local_client, "job_exit3", TERMINAL) == "Failed"
    properties = get(local_client, job_path("job_exit3")).json()["properties"]
    assert properties["properties"]["exitCode"] == "3"
    assert "error" not in properties  # CommandJob has no error: run history has it
    assert "exited with status code 3" in run_error(local_client, "job_exit3")["message"]


def test_a_job_goes_through_every_status_of_the_progression(local_client: httpx.Client) -> None:
    created = put_job(local_client, "job_progress", command="sleep 1.0")
    # The PUT's answer is the job as created; the polls after it see what follows (on a
    # loaded machine the first poll may already find it Queued or Starting).
    seen: list[str] = [created.json()["properties"]["status"]]

    def finished() -> bool:
        status = status_of(local_client, "job_progress")
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in TERMINAL

    wait_until(finished, interval=0.01)

    assert seen[0] == "NotStarted"
    assert "Running" in seen
    assert seen[-1] == "Completed"
    order = ["NotStarted", "Queued", "Starting", "Running", "Finalizing", "Completed"]
    assert seen == sorted(seen, key=order.index)


def test_literal_inputs_are_substituted_into_the_command(
    local_workspace: LocalWorkspace, local_client: httpx.Client
) -> None:
    put_job(
        local_client,
        "job_inputs",
        command="echo lr=${{inputs.lr}} epochs=${{ inputs.epochs }}",
        inputs={
            "lr": {"jobInputType": "literal", "value": "0.1"},
            "epochs": {"jobInputType": "literal", "value": 3},
        },
    )

    wait_for_status(local_client, "job_inputs", TERMINAL)
    log = local_workspace.log_path(JobRef(WORKSPACE, "job_inputs")).read_text()
    assert "lr=0.1 epochs=3" in log


def test_no_more_jobs_run_at_once_than_max_concurrent(tmp_path: Path) -> None:
    names = [f"job_{i}" for i in range(4)]
    most_running = 0
    with (
        LocalWorkspace(tmp_path, max_concurrent=2) as workspace,
        arm_client(workspace.endpoint) as client,
    ):
        for name in names:
            put_job(client, name, command="sleep 0.3")

        def all_done() -> bool:
            nonlocal most_running
            listed = get(client, f"{WORKSPACE.arm_path}/jobs").json()["value"]  # one read
            statuses = [job["properties"]["status"] for job in listed]
            most_running = max(most_running, sum(s in ("Starting", "Running") for s in statuses))
            return len(statuses) == len(names) and all(s == "Completed" for s in statuses)

        wait_until(all_done, timeout=8)

    assert most_running == 2


def test_cancel_kills_the_whole_process_group(
    local_workspace: LocalWorkspace, local_client: httpx.Client
) -> None:
    put_job(local_client, "job_cancel", command="sleep 30 & echo $! > child.pid; wait")
    wait_for_status(local_client, "job_cancel", {"Running"})
    child_pid_file = local_workspace.run_dir(JobRef(WORKSPACE, "job_cancel")) / "child.pid"
    child_pid = int(read_when_written(child_pid_file))

    response = local_client.post(
        job_path("job_cancel") + "/cancel", params={"api-version": API_VERSION}
    )

    assert response.status_code == 202
    assert response.content == b""
    assert response.headers["retry-after"] == "0.05"
    location = httpx.URL(response.headers["location"])
    expected = f"/subscriptions/{WORKSPACE.subscription}/providers/"
    assert str(location).startswith(local_workspace.endpoint + expected)
    assert "/mfeOperationResults/" in location.path
    assert location.params["api-version"] == API_VERSION
    assert status_of(local_client, "job_cancel") in ("CancelRequested", "Canceled")
    wait_until(lambda: local_client.get(location).status_code == 200)
    assert status_of(local_client, "job_cancel") == "Canceled"
    wait_until(lambda: process_gone(child_pid))


def test_cancel_escalates_to_sigkill_for_processes_ignoring_sigterm(
    local_workspace: LocalWorkspace, local_client: httpx.Client
) -> None:
    # The Location keeps answering 202 until SIGKILL (after 2 s) has ended the group.
    put_job(
        local_client,
        "job_stubborn",
        command="trap '' TERM; sleep 30 & echo $! > child.pid; wait",
    )
    wait_for_status(local_client, "job_stubborn", {"Running"})
    child_pid_file = local_workspace.run_dir(JobRef(WORKSPACE, "job_stubborn")) / "child.pid"
    child_pid = int(read_when_written(child_pid_file))

    cancel = local_client.post(
        job_path("job_stubborn") + "/cancel", params={"api-version": API_VERSION}
    )
    time.sleep(0.5)
    pending = local_client.get(cancel.headers["location"])

    assert pending.status_code == 202
    assert pending.headers["location"] == cancel.headers["location"]
    assert "retry-after" in pending.headers
    assert status_of(local_client, "job_stubborn") == "CancelRequested"
    assert not process_gone(child_pid)
    wait_until(lambda: local_client.get(cancel.headers["location"]).status_code == 200)
    assert status_of(local_client, "job_stubborn") == "Canceled"
    wait_until(lambda: process_gone(child_pid))


def test_cancel_of_a_finished_job_changes_nothing(local_client: httpx.Client) -> None:
    put_job(local_client, "job_done", command="true")
    wait_for_status(local_client, "job_done", TERMINAL)

    response = local_client.post(
        job_path("job_done") + "/cancel", params={"api-version": API_VERSION}
    )

    assert response.status_code == 200
    assert status_of(local_client, "job_done") == "Completed"


def test_cancel_of_an_unknown_job_is_404(local_client: httpx.Client) -> None:
    response = local_client.post(
        job_path("no_such_job") + "/cancel", params={"api-version": API_VERSION}
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


def test_restart_keeps_finished_jobs_and_runs_queued_ones(tmp_path: Path) -> None:
    with LocalWorkspace(tmp_path, max_concurrent=1) as first, arm_client(first.endpoint) as client:
        put_job(client, "job_done", command="exit 0")
        wait_for_status(client, "job_done", TERMINAL)
        put_job(client, "job_running", command="sleep 0.5; exit 4")
        put_job(client, "job_queued", command="echo later")
        wait_for_status(client, "job_running", {"Running"})
        assert status_of(client, "job_queued") == "Queued"
        first.stop(kill_jobs=False)

    with (
        LocalWorkspace(tmp_path, max_concurrent=1) as second,
        arm_client(second.endpoint) as client,
    ):
        assert status_of(client, "job_done") == "Completed"
        assert wait_for_status(client, "job_running", TERMINAL) == "Failed"
        job = get(client, job_path("job_running")).json()
        assert job["properties"]["properties"]["exitCode"] == "4"
        assert wait_for_status(client, "job_queued", TERMINAL) == "Completed"
        log = second.log_path(JobRef(WORKSPACE, "job_queued")).read_text()
        assert "later" in log


def test_a_job_that_vanished_during_a_restart_fails_clearly(tmp_path: Path) -> None:
    with LocalWorkspace(tmp_path) as first, arm_client(first.endpoint) as client:
        put_job(client, "job_lost", command="sleep 30")
        wait_for_status(client, "job_lost", {"Running"})
        pid = first.store.find(JobRef(WORKSPACE, "job_lost")).pid  # type: ignore[union-attr]
        first.stop(kill_jobs=False)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)

    with LocalWorkspace(tmp_path) as second, arm_client(second.endpoint) as client:
        assert wait_for_status(client, "job_lost", TERMINAL) == "Failed"
        error = run_error(client, "job_lost")
        assert error["message"] == NO_EXIT_CODE_MESSAGE


def test_stopping_with_kill_jobs_cancels_running_jobs(tmp_path: Path) -> None:
    with LocalWorkspace(tmp_path) as first, arm_client(first.endpoint) as client:
        put_job(client, "job_killed", command="sleep 30")
        wait_for_status(client, "job_killed", {"Running"})
        pid = first.store.find(JobRef(WORKSPACE, "job_killed")).pid  # type: ignore[union-attr]
    assert pid is not None
    assert process_gone(pid)

    with LocalWorkspace(tmp_path) as second, arm_client(second.endpoint) as client:
        assert status_of(client, "job_killed") == "Canceled"


def test_binding_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        LocalWorkspace(tmp_path, host="0.0.0.0")
    LocalWorkspace(tmp_path, host="0.0.0.0", token="t")  # constructed, never started


def test_a_local_jobs_studio_link_is_its_log_page_on_this_server(
    local_workspace: LocalWorkspace, local_client: httpx.Client
) -> None:
    put_job(local_client, "job_linked", command="echo linked-output")
    assert wait_for_status(local_client, "job_linked", TERMINAL) == "Completed"

    link = get(local_client, job_path("job_linked")).json()["properties"]["services"]["Studio"][
        "endpoint"
    ]
    listed = get(local_client, f"{job_path('job_linked').rsplit('/', 1)[0]}").json()["value"]

    assert link.startswith(local_workspace.endpoint)
    assert "ml.azure.com" not in link
    assert [job["properties"]["services"]["Studio"]["endpoint"] for job in listed] == [link]
    # what a browser does with the link: a plain GET, no Authorization header
    page = httpx.get(link, timeout=5.0)
    assert page.status_code == 200
    assert "linked-output" in page.text


def test_with_a_token_the_log_page_still_needs_it(tmp_path: Path) -> None:
    with LocalWorkspace(tmp_path / "ws", token="s3cret-token") as workspace:
        with arm_client(workspace.endpoint, token="s3cret-token") as client:
            put_job(client, "job_private", command="echo private")
            link = get(client, job_path("job_private")).json()["properties"]["services"]["Studio"][
                "endpoint"
            ]
            assert client.get(link).status_code == 200
        assert httpx.get(link, timeout=5.0).status_code == 401
