"""``ArmJobSource()`` with no endpoint reads ``AMLWAIT_ARM_ENDPOINT``, as the CLI does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from amlwait.azureml.arm import DEFAULT_ENDPOINT, ArmJobSource
from amlwait.azureml.credentials import StaticToken
from amlwait.core.clock import VirtualClock
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.workspace import ScriptedWorkspace

WS = WorkspaceRef("sub-1", "rg-1", "ws-1")


@pytest.fixture
def workspace() -> Iterator[ScriptedWorkspace]:
    with ScriptedWorkspace(VirtualClock()) as scripted:
        yield scripted


def test_without_an_endpoint_the_source_reads_the_environment(
    workspace: ScriptedWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace.add_job(WS, "job_env", [(0, "Running")])
    monkeypatch.setenv("AMLWAIT_ARM_ENDPOINT", workspace.endpoint)

    async def read() -> str | None:
        async with ArmJobSource(credential=StaticToken("t")) as source:
            snapshot = await source.get_job(JobRef(WS, "job_env"))
            return snapshot.status if snapshot else None

    assert asyncio.run(read()) == "Running"
    assert any(r.path.endswith("/jobs/job_env") for r in workspace.requests)


def test_without_the_environment_the_source_talks_to_azure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AMLWAIT_ARM_ENDPOINT", raising=False)

    async def endpoint() -> str:
        async with ArmJobSource(credential=StaticToken("t")) as source:
            return source.endpoint

    assert asyncio.run(endpoint()) == DEFAULT_ENDPOINT
