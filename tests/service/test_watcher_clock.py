"""The app and the watcher in one event loop on a virtual clock: every "now" is that clock's,
and a hook is told about each finished wait (what the benchmark subscribes to)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from amlwait.core.clock import Clock, SystemClock, VirtualClock
from amlwait.core.jobs import JobSnapshot, WorkspaceRef
from amlwait.core.tracker import BatchOutcome
from amlwait.service.app import create_app
from amlwait.service.devops_client import DevOpsClient
from amlwait.service.hooks import WaitFinished
from amlwait.service.store import Store, open_store
from amlwait.service.testing import (
    SERVICE_KEY,
    TEST_WORKSPACE,
    FakeDevOps,
    callback_headers,
    wait_body,
)
from amlwait.service.watcher import Watcher, WatcherSettings
from amlwait.testing import FakeJobSource

# A lease the virtual clock cannot outrun between two real-time claim rounds.
SETTINGS = WatcherSettings(lease_seconds=86400.0, outbox_lease_seconds=86400.0)
REAL_SECONDS = 20.0  # at most, for a whole virtual wait


class Recorder:
    def __init__(self) -> None:
        self.finished: list[WaitFinished] = []

    def on_wait_finished(self, record: WaitFinished) -> None:
        self.finished.append(record)


class Broken:
    def on_wait_finished(self, record: WaitFinished) -> None:
        raise RuntimeError("a broken hook")


@pytest.fixture
def devops() -> Iterator[FakeDevOps]:
    fake = FakeDevOps().start()
    yield fake
    fake.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'waits.db'}", secret_key="clock-test-secret")
    yield opened
    opened.close()


async def follow_one_wait(
    store: Store,
    devops: FakeDevOps,
    clock: VirtualClock,
    source: FakeJobSource,
    body: str,
    settings: WatcherSettings = SETTINGS,
) -> Recorder:
    """POST one wait, run a watcher until a hook hears its end and DevOps got TaskCompleted."""
    recorder = Recorder()
    client = DevOpsClient([devops.org_url])
    watcher = Watcher(
        store, source, client, settings=settings, clock=clock, hooks=[Broken(), recorder]
    )
    app = create_app(store, allowed_orgs=[devops.org_url], service_key=SERVICE_KEY, watcher=watcher)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        answer = await http.post(
            "/v1/waits", content=body, headers=callback_headers(devops.org_url)
        )
        assert answer.status_code == 202, answer.text
    watching = asyncio.ensure_future(watcher.run())
    loop = asyncio.get_running_loop()
    give_up = loop.time() + REAL_SECONDS
    try:
        while not (recorder.finished and devops.accepted_completions()):
            assert loop.time() < give_up, "the wait did not end in real time"
            assert not watching.done(), watching.result()
            await asyncio.sleep(0.02)
    finally:
        watcher.stop()
        await watching
        await client.aclose()
    return recorder


def feed_lines(devops: FakeDevOps) -> list[str]:
    return [
        line
        for call in devops.snapshot()
        if call.path.endswith("/feed")
        for line in call.json["value"]
    ]


def test_missing_jobs_fail_after_the_grace_measured_on_the_injected_clock(
    store: Store, devops: FakeDevOps
) -> None:
    clock = VirtualClock()
    started = clock.now()
    source = FakeJobSource(clock)  # the batch never appears
    body = wait_body("never-there", 2, timeout="1h")
    recorder = asyncio.run(follow_one_wait(store, devops, clock, source, body))

    (record,) = recorder.finished
    grace = SETTINGS.policy.not_found_grace
    assert record.outcome is BatchOutcome.FAILED and record.recorded
    assert record.reason == "only 0 of 2 jobs tagged 'never-there' appeared within 5m00s"
    assert record.created_at == started  # the app stamps the wait on the watcher's clock
    poll = SETTINGS.policy.poll_interval
    assert started + grace <= record.finished_at <= started + grace + poll
    assert record.result is None and record.job_counts == {} and record.jobs == ()
    assert devops.accepted_completions()[0].json["result"] == "failed"
    stored = store.get_wait(record.wait_id)
    assert stored is not None and stored.deadline == started + 3600
    # Feed lines carry the virtual time (2026-01-01), not the machine's.
    lines = feed_lines(devops)
    assert lines and all(line.startswith("2026-01-01T00:0") for line in lines), lines


def test_a_hook_hears_the_result_counts_and_times_of_a_finished_wait(
    store: Store, devops: FakeDevOps
) -> None:
    clock = VirtualClock()
    started = clock.now()
    source = FakeJobSource(clock)
    for name, end in (("TRAIN_1", "Completed"), ("TRAIN_2", "Failed")):
        timeline = [(0, "Queued"), (600, "Running"), (7200, end)]
        source.add_job(name, timeline, workspace=TEST_WORKSPACE, tags={"batch-7": "1"})
    policy = replace(SETTINGS.policy, poll_interval=30.0, max_poll_interval=60.0)
    settings = replace(SETTINGS, policy=policy)
    body = wait_body("batch-7", 2, timeout="1d")
    recorder = asyncio.run(follow_one_wait(store, devops, clock, source, body, settings))

    (record,) = recorder.finished  # the broken hook before it changed nothing
    assert record.outcome is BatchOutcome.FAILED and record.devops_result == "failed"
    assert record.recorded and record.tag == "batch-7"
    assert record.jobs == ("TRAIN_1", "TRAIN_2")
    assert record.job_counts == {"succeeded": 1, "failed": 1}
    assert record.reason == "1 job ended badly: TRAIN_2"
    assert record.result is not None and record.result.outcome is BatchOutcome.FAILED
    assert record.requests == source.requests_sent > 0
    assert record.created_at == started
    assert started + 7200 <= record.finished_at <= started + 7200 + 60
    assert [c.json["result"] for c in devops.accepted_completions()] == ["failed"]


class CountingStore:
    """The store, counting the waits each claim returns and each renewal asks for."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.claimed: list[int] = []
        self.renewed: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def claim_waits(self, owner: str, **options: Any) -> Any:
        records = self.store.claim_waits(owner, **options)
        self.claimed.append(len(records))
        return records

    def renew_leases(self, owner: str, wait_ids: Any, **options: Any) -> Any:
        self.renewed.append(len(wait_ids))
        return self.store.renew_leases(owner, wait_ids, **options)


def test_posting_waits_claims_each_once_and_renews_the_leases_once_per_interval(
    store: Store, devops: FakeDevOps
) -> None:
    """Every POST nudges a claim round. It used to renew every held lease and claim (write
    and decode) every held wait again, so posting N waits cost O(N²) row writes."""
    waits = 40
    clock = SystemClock()
    source = FakeJobSource(clock)
    for number in range(waits):  # Running for the whole test: every wait stays followed
        source.add_job(
            f"JOB_{number}", [(0, "Running")], workspace=TEST_WORKSPACE, tags={f"b-{number}": "1"}
        )
    counting = CountingStore(store)
    settings = replace(SETTINGS, claim_interval=60.0)

    async def post_all() -> Watcher:
        client = DevOpsClient([devops.org_url])
        watcher = Watcher(cast(Store, counting), source, client, settings=settings, clock=clock)
        app = create_app(
            cast(Store, counting),
            allowed_orgs=[devops.org_url],
            service_key=SERVICE_KEY,
            watcher=watcher,
        )
        watching = asyncio.ensure_future(watcher.run())
        transport = httpx.ASGITransport(app=app)
        loop = asyncio.get_running_loop()
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
                for number in range(waits):
                    answer = await http.post(
                        "/v1/waits",
                        content=wait_body(f"b-{number}", 1, timeout="1h"),
                        headers=callback_headers(devops.org_url),
                    )
                    assert answer.status_code == 202, answer.text
                    await asyncio.sleep(0.01)  # let the nudged round run
            give_up = loop.time() + REAL_SECONDS
            while sum(counting.claimed) < waits:
                assert loop.time() < give_up, f"claimed {counting.claimed}"
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # a few more rounds may run: none may claim again
        finally:
            watcher.stop()
            await watching
            await client.aclose()
        return watcher

    asyncio.run(post_all())
    assert sum(counting.claimed) == waits, counting.claimed
    assert len(counting.claimed) > 2  # the nudges did run rounds
    assert len(counting.renewed) <= 1 and sum(counting.renewed) < waits, counting.renewed


class QueuedListing(FakeJobSource):
    """The first tag listing waits ``queued`` seconds for a request slot, as it does behind
    a replica's request budget when many waits poll at once; then it answers in full."""

    def __init__(self, clock: Clock, queued: float) -> None:
        super().__init__(clock)
        self.queued = queued
        self.listings = 0
        self.first_fails: Exception | None = None  # after its time in the queue
        self.hangs = False

    async def list_jobs_by_tag(self, workspace: WorkspaceRef, tag: str) -> list[JobSnapshot]:
        self.listings += 1
        if self.hangs:
            await asyncio.Event().wait()
        if self.listings == 1:
            await self.clock.sleep(self.queued)
            if self.first_fails is not None:
                raise self.first_fails
        return await super().list_jobs_by_tag(workspace, tag)


def test_a_listing_queued_past_the_not_found_grace_still_finds_the_jobs(
    store: Store, devops: FakeDevOps
) -> None:
    # The jobs are there from the start, but the first listing is answered only after the
    # grace ended (it waited for the replica's request budget). Its answer decides: the
    # wait succeeds; it used to be cut off at the grace and end failed, "only 0 of 2 jobs
    # appeared". The real clock, scaled down: the cut-off was a real-time one.
    clock = SystemClock()
    policy = replace(SETTINGS.policy, not_found_grace=0.2)
    settings = replace(SETTINGS, policy=policy)
    source = QueuedListing(clock, queued=1.5)  # past the grace and past any 1 s minimum
    for name in ("TRAIN_1", "TRAIN_2"):
        source.add_job(name, [(0, "Completed")], workspace=TEST_WORKSPACE, tags={"q": "1"})
    body = wait_body("q", 2, timeout="1h")
    recorder = asyncio.run(follow_one_wait(store, devops, clock, source, body, settings))

    (record,) = recorder.finished
    assert record.reason is None, record.reason
    assert record.outcome is BatchOutcome.SUCCEEDED and record.jobs == ("TRAIN_1", "TRAIN_2")
    assert [c.json["result"] for c in devops.accepted_completions()] == ["succeeded"]
    assert not any("could not be read" in line for line in feed_lines(devops))


def test_a_listing_that_fails_after_the_grace_does_not_end_the_wait_as_not_found(
    store: Store, devops: FakeDevOps
) -> None:
    # A failed read says nothing about the jobs: the next listing (a poll interval later,
    # on the virtual clock) finds them, and the failure is in the feed, named.
    clock = VirtualClock()
    grace = SETTINGS.policy.not_found_grace
    source = QueuedListing(clock, queued=grace + 60)
    source.first_fails = RuntimeError("the listing broke")
    for name in ("TRAIN_1", "TRAIN_2"):
        source.add_job(name, [(0, "Completed")], workspace=TEST_WORKSPACE, tags={"q": "1"})
    body = wait_body("q", 2, timeout="1h")
    recorder = asyncio.run(follow_one_wait(store, devops, clock, source, body))

    (record,) = recorder.finished
    assert record.outcome is BatchOutcome.SUCCEEDED and record.reason is None, record.reason
    assert source.listings >= 2
    lines = feed_lines(devops)
    assert any("could not be read: RuntimeError: the listing broke" in line for line in lines)
    assert not any("appeared within" in line for line in lines), lines


def test_a_listing_that_never_answers_ends_the_wait_at_its_deadline_saying_so(
    store: Store, devops: FakeDevOps
) -> None:
    clock = SystemClock()  # the cut-off is a real-time one: a 1-second wait
    policy = replace(SETTINGS.policy, not_found_grace=0.2)
    source = QueuedListing(clock, queued=0.0)
    source.hangs = True
    body = wait_body("q", 2, timeout="1s")
    settings = replace(SETTINGS, policy=policy)
    recorder = asyncio.run(follow_one_wait(store, devops, clock, source, body, settings))

    (record,) = recorder.finished
    assert record.outcome is BatchOutcome.FAILED
    assert record.reason == (
        "deadline reached; Azure ML could not be read: TimeoutError: listing the jobs "
        "tagged 'q' got no answer within 1s"
    )
