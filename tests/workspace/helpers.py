"""Shared helpers for the local workspace tests: an ARM client and polling with a timeout."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from amlwait.core.jobs import WorkspaceRef

API_VERSION = "2025-12-01"
WORKSPACE = WorkspaceRef("00000000-0000-0000-0000-0000000000a1", "rg-1", "ws-1")
OTHER_WORKSPACE = WorkspaceRef("00000000-0000-0000-0000-0000000000a1", "rg-1", "ws-2")
WS_PATH = WORKSPACE.arm_path
ENVIRONMENT_ID = "azureml:local-python@latest"

T = TypeVar("T")


def arm_client(endpoint: str, *, token: str | None = "any-token", **kwargs: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(base_url=endpoint, headers=headers, timeout=10.0, **kwargs)


def job_path(name: str, workspace: WorkspaceRef = WORKSPACE) -> str:
    return f"{workspace.arm_path}/jobs/{name}"


def get(client: httpx.Client, path: str, **params: str) -> httpx.Response:
    return client.get(path, params={"api-version": API_VERSION, **params})


def put_job(
    client: httpx.Client, name: str, command: str = "true", **properties: Any
) -> httpx.Response:
    body = {
        "properties": {
            "jobType": "Command",
            "command": command,
            "environmentId": ENVIRONMENT_ID,
            **properties,
        }
    }
    return client.put(job_path(name), params={"api-version": API_VERSION}, json=body)


def run_error(client: httpx.Client, name: str, workspace: WorkspaceRef = WORKSPACE) -> Any:
    """The job's ``error.error`` in run history (where Azure ML keeps why it failed)."""
    response = client.get(f"/history/v1.0{workspace.arm_path}/runs/{name}/details")
    response.raise_for_status()
    return response.json().get("error", {}).get("error")


def status_of(client: httpx.Client, name: str) -> str:
    response = get(client, job_path(name))
    response.raise_for_status()
    return str(response.json()["properties"]["status"])


def wait_until(probe: Callable[[], T | None], *, timeout: float = 5.0, interval: float = 0.02) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


def wait_for_status(
    client: httpx.Client, name: str, wanted: set[str], *, timeout: float = 5.0
) -> str:
    def reached() -> str | None:
        status = status_of(client, name)
        return status if status in wanted else None

    return wait_until(reached, timeout=timeout)


def read_when_written(path: Path, *, timeout: float = 5.0) -> str:
    """The text of ``path`` once it exists and is not empty."""
    return wait_until(lambda: path.read_text().strip() if path.exists() else None, timeout=timeout)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
