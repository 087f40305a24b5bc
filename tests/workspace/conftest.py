"""Fixtures: a real local workspace on a temporary dir, a scripted one on a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amlwait.core.clock import VirtualClock
from amlwait.workspace import LocalWorkspace, ScriptedWorkspace
from tests.workspace.helpers import arm_client


@pytest.fixture
def local_workspace(tmp_path: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path / "ws", page_size=3, cancel_retry_after=0.05) as workspace:
        yield workspace


@pytest.fixture
def local_client(local_workspace: LocalWorkspace) -> Iterator[httpx.Client]:
    with arm_client(local_workspace.endpoint) as client:
        yield client


@pytest.fixture
def virtual_clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def scripted_workspace(virtual_clock: VirtualClock) -> Iterator[ScriptedWorkspace]:
    with ScriptedWorkspace(virtual_clock, page_size=2, cancel_retry_after=0.05) as workspace:
        yield workspace


@pytest.fixture
def scripted_client(scripted_workspace: ScriptedWorkspace) -> Iterator[httpx.Client]:
    with arm_client(scripted_workspace.endpoint) as client:
        yield client
