"""The service gives freed heap back to the system after each claim round."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlwait.core.clock import VirtualClock
from amlwait.service import heap
from amlwait.service.devops_client import DevOpsClient
from amlwait.service.store import Store, open_store
from amlwait.service.watcher import Watcher, WatcherSettings
from amlwait.testing import FakeJobSource


def resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_trim_returns_what_a_worker_thread_freed() -> None:
    if not Path("/proc/self/status").exists() or not heap.trim():
        pytest.skip("needs glibc's malloc_trim and /proc")
    kept: list[bytes] = []

    def churn() -> None:
        # 60 MB of C-heap blocks in this thread's arena, one in 64 kept: the free space is
        # scattered between live blocks, so glibc cannot give it back by itself.
        blocks = []
        for number in range(60_000):
            blocks.append(bytes(1000))
            if number % 64 == 0:
                kept.append(bytes(1000))
        blocks.clear()

    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    before = resident_mb()
    assert heap.trim()
    assert before - resident_mb() > 30


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'waits.db'}", secret_key="heap-test-secret")
    yield opened
    opened.close()


def test_claim_rounds_trim_the_heap_once_per_claim_interval(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(heap, "trim", lambda: trims.append(1) or True)
    clock = VirtualClock()

    async def run() -> None:
        client = DevOpsClient(["https://dev.azure.com/contoso/"])
        watcher = Watcher(
            store,
            FakeJobSource(clock),
            client,
            settings=WatcherSettings(claim_interval=0.01),
            clock=clock,
        )
        watching = asyncio.ensure_future(watcher.run())
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 10
        while len(trims) < 3 and loop.time() < give_up:
            await asyncio.sleep(0.01)
        watcher.stop()
        await watching
        await client.aclose()

    asyncio.run(run())
    assert len(trims) >= 3
