"""Fixtures shared across the test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amlwait.workspace import ScriptedWorkspace


@pytest.fixture
def realtime_workspace() -> Iterator[ScriptedWorkspace]:
    """A scripted workspace on the real clock (timelines in real seconds)."""
    with ScriptedWorkspace(page_size=2, cancel_retry_after=0.05) as scripted:
        yield scripted
