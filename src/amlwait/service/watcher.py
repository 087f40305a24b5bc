"""One replica's work: follow the waits it holds a lease on, and deliver the outbox.

Two loops share one :class:`~amlwait.azureml.ArmJobSource` (one request budget):

- the **claim loop** renews the leases of the waits this replica follows, gives up those
  whose lease was lost, and claims waits nobody holds (new ones, and those of a replica that
  died). Each claimed wait runs one :class:`~amlwait.waiter.Waiter` (the batch read by its
  tag with LIST calls), after a discovery phase when the request named no jobs: the batch
  is listed until ``expectedJobs`` jobs carry the tag, and fails if fewer have appeared
  when the not-found grace ends. Progress (jobs, statuses) is saved with the lease; feed
  lines go to the outbox. At the end :meth:`Store.finish_wait` stores the outcome together
  with the closing feed lines, the summary log and the ``TaskCompleted`` item, in one step.
- the **outbox loop** delivers items in order per wait, retrying with capped exponential
  backoff: ``TaskCompleted`` until Azure DevOps accepts it (it is marked delivered only
  then, so a crash re-sends rather than loses it), feed lines and logs a few times only.

Everything lives in the store, so a restarted replica simply claims again and resumes.
An Event Grid event for a run makes the waits following that job read it at once
(events may be late, missing or out of order: polling stays the source of truth).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from amlwait.console import PlainReporter, summary_lines
from amlwait.core.clock import Clock, SystemClock
from amlwait.core.duration import format_duration
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.policy import PollPolicy
from amlwait.core.retry import RetryPolicy
from amlwait.core.source import JobSource
from amlwait.core.tracker import BatchOutcome, JobState
from amlwait.errors import AmlwaitError
from amlwait.result import WaitResult
from amlwait.service.devops_client import DevOpsClient, DevOpsError, feed_line
from amlwait.service.models import Callback, RunEvent
from amlwait.service.store import OutboxItem, Store, WaitRecord
from amlwait.waiter import Waiter, WaitOptions

log = logging.getLogger("amlwait.service")

MAX_FEED_LINES = 200  # per flush; the final log has every job anyway


@dataclass(frozen=True)
class WatcherSettings:
    """How a replica paces itself. ``lease_seconds`` is how long a dead replica's waits
    stay untouched before another one resumes them."""

    policy: PollPolicy = field(default_factory=PollPolicy)
    lease_seconds: float = 60.0
    # An outbox claim must outlast a whole delivery (a log takes three requests), or a
    # second sender could send the same message.
    outbox_lease_seconds: float = 90.0
    claim_interval: float = 5.0
    progress_interval: float = 10.0
    outbox_interval: float = 1.0
    outbox_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(initial=2.0, maximum=300.0, jitter=1.0)
    )
    feed_attempts: int = 5
    completed_attempts: int = 1000
    arm_error_limit: int = 5
    concurrency: int = 16
    # Once Event Grid events arrive for a wait's jobs, polling is only a safety net (events
    # can be late or missing): the batch is read this often, and a job when its event says
    # it ended.
    event_poll_interval: float = 300.0

    def event_policy(self) -> PollPolicy:
        interval = self.event_poll_interval
        slowest = max(self.policy.max_poll_interval, interval)
        return replace(self.policy, poll_interval=interval, max_poll_interval=slowest)


def replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _WakeableClock:
    """A wait's clock (real time unless a ``base`` is given, as the benchmark's virtual
    clock), whose sleep an event (or a new wait) can cut short."""

    def __init__(self, base: Clock | None = None) -> None:
        self.base = base or SystemClock()
        self._woken = asyncio.Event()

    def now(self) -> float:
        return self.base.now()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0 and not self._woken.is_set():
            sleeper = asyncio.ensure_future(self.base.sleep(seconds))
            waker = asyncio.ensure_future(self._woken.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    task.cancel()
                await asyncio.gather(sleeper, waker, return_exceptions=True)
        else:
            await asyncio.sleep(0)
        self._woken.clear()

    def wake(self) -> None:
        self._woken.set()


class _Lines(io.StringIO):
    """Where the reporter prints: each line time-stamped for the feed."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[str] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.pending.append(feed_line(line, time.time()))
        return len(text)

    def take(self) -> list[str]:
        taken, self.pending = self.pending, []
        if len(taken) > MAX_FEED_LINES:
            dropped = len(taken) - MAX_FEED_LINES
            note = f"... {dropped} more lines (the final log lists every job)"
            note = feed_line(note, time.time())
            taken = [*taken[:MAX_FEED_LINES], note]
        return taken


@dataclass
class _Follow:
    record: WaitRecord
    clock: _WakeableClock
    lines: _Lines = field(default_factory=_Lines)
    waiter: Waiter | None = None
    jobs: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    saved: dict[str, Any] | None = None
    lost: bool = False
    evented: bool = False
    job_set: frozenset[str] = frozenset()  # ``jobs``, for an event's lookup

    @property
    def wait_id(self) -> str:
        return self.record.wait_id

    @property
    def tag(self) -> str:
        return str(self.record.request["tag"])

    def say(self, text: str) -> None:
        self.lines.write(text + "\n")

    def read_now(self, name: str | None) -> None:
        """Read ``name`` (or, while discovering, the listing) at the next wake, which is now."""
        waiter = self.waiter
        if waiter is not None and name is not None:
            waiter.tracker.read_now(name, self.clock.now())
        self.clock.wake()

    def hears_events(self, policy: PollPolicy) -> None:
        """Events arrive for this wait's jobs: poll by ``policy`` (the safety net)."""
        if not self.evented:
            self.evented = True
            if self.waiter is not None:
                self.waiter.use_policy(policy)
            interval = format_duration(policy.poll_interval)
            self.say(f"Event Grid events arrive for these jobs: polling every {interval}")

    def abandon(self) -> None:
        """The lease is gone: stop without finishing (whoever holds it now finishes)."""
        self.lost = True
        if self.waiter is not None:
            self.waiter.stop()
        if self.task is not None and self.waiter is None:
            self.task.cancel()


def _job_document(job: JobState) -> dict[str, Any]:
    return {
        "name": job.name,
        "status": job.status,
        "outcome": job.outcome.value if job.outcome else None,
        "reason": job.reason,
        "link": job.link,
    }


class Watcher:
    """Follows waits and delivers callbacks until :meth:`stop`; see the module docstring."""

    def __init__(
        self,
        store: Store,
        source: JobSource,
        devops: DevOpsClient,
        *,
        settings: WatcherSettings | None = None,
        owner: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock  # the waits' clock (real time unless given)
        self.store = store
        self.source = source
        self.devops = devops
        self.settings = settings or WatcherSettings()
        self.owner = owner or replica_id()
        self._event_policy = self.settings.event_policy()
        self.arm_errors = 0
        self.callback_errors = 0
        self.events_received = 0
        self._follows: dict[str, _Follow] = {}
        self._claim_now = asyncio.Event()
        self._outbox_now = asyncio.Event()
        self._stopped = asyncio.Event()

    # -- outside world ------------------------------------------------------------------

    def nudge(self) -> None:
        """A wait was just stored: claim it now rather than at the next claim round."""
        self._claim_now.set()

    def wake_runs(self, runs: Iterable[RunEvent]) -> int:
        """Event Grid said runs changed. A wait following such a run reads it now when
        the event says it ended (or says nothing of its status); any event switches the
        wait's polling to the slower safety net. Returns how many waits were woken."""
        woken = 0
        for run in runs:
            self.events_received += 1
            for follow in list(self._follows.values()):
                if run.run_id in follow.job_set:
                    follow.hears_events(self._event_policy)
                    if run.worth_reading:
                        follow.read_now(run.run_id)
                        woken += 1
                elif not follow.jobs and follow.tag in run.tags:
                    follow.read_now(None)
                    woken += 1
        return woken

    def metrics(self) -> dict[str, int]:
        return {
            "waits_followed": len(self._follows),
            "arm_requests_total": self.source.requests_sent,
            "arm_errors_total": self.arm_errors,
            "devops_requests_total": self.devops.requests_sent,
            "devops_errors_total": self.callback_errors,
            "eventgrid_events_total": self.events_received,
        }

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        """Claim, follow and deliver until :meth:`stop`; leases are left to expire."""
        loops = [
            asyncio.ensure_future(self._claim_loop()),
            asyncio.ensure_future(self._outbox_loop()),
        ]
        try:
            await self._stopped.wait()
        finally:
            for task in loops:
                task.cancel()
            follows = [f.task for f in self._follows.values() if f.task is not None]
            for follow in self._follows.values():
                follow.abandon()
            await asyncio.gather(*loops, *follows, return_exceptions=True)

    # -- claiming -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        interval = min(self.settings.claim_interval, self.settings.lease_seconds / 3)
        while True:
            try:
                await self._claim_round()
            except Exception:  # the store may be briefly unreachable: try again next round
                log.exception("claiming waits failed")
            await _wait_for(self._claim_now, interval)
            self._claim_now.clear()

    async def _claim_round(self) -> None:
        lease = self.settings.lease_seconds
        if self._follows:
            held = list(self._follows)
            kept = await asyncio.to_thread(
                self.store.renew_leases, self.owner, held, now=time.time(), lease_seconds=lease
            )
            for wait_id in set(held) - set(kept):
                log.warning("lost the lease of wait %s; another replica follows it", wait_id)
                self._follows[wait_id].abandon()
        records = await asyncio.to_thread(
            self.store.claim_waits, self.owner, now=time.time(), lease_seconds=lease
        )
        for record in records:
            if record.wait_id in self._follows or record.state != "waiting":
                continue
            follow = _Follow(record, _WakeableClock(self.clock))
            self._follows[record.wait_id] = follow
            follow.task = asyncio.ensure_future(self._run_follow(follow))

    async def _run_follow(self, follow: _Follow) -> None:
        try:
            await self._follow(follow)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following wait %s failed; it resumes later", follow.wait_id)
        finally:
            self._follows.pop(follow.wait_id, None)

    # -- following one wait ---------------------------------------------------------------

    async def _follow(self, follow: _Follow) -> None:
        record = follow.record
        request = record.request
        workspace = WorkspaceRef(
            str(request["subscription"]), str(request["resourceGroup"]), str(request["workspace"])
        )
        saved = record.result or {}
        names = list(request.get("jobs") or saved.get("jobs") or [])
        if saved:
            follow.say(f"amlwait service {self.owner} resumes this wait")
        if not names:
            discovered = await self._discover(follow, workspace)
            if discovered is None:
                return
            names = discovered
        follow.jobs = names
        follow.job_set = frozenset(names)
        await self._save(follow, {"jobs": names, "states": []})
        refs = [JobRef(workspace, name) for name in names]
        failures = 0
        while True:
            if follow.lost:
                return
            options = WaitOptions(
                timeout=max(0.0, record.deadline - time.time()),
                policy=self._event_policy if follow.evented else self.settings.policy,
                fail_fast=bool(request.get("failFast", False)),
                cancel_remaining=bool(request.get("cancelRemaining", False)),
                concurrency=self.settings.concurrency,
            )
            waiter = Waiter(
                refs,
                self.source,
                options=options,
                clock=follow.clock,
                tag=follow.tag,
                listener=PlainReporter(follow.lines),
            )
            follow.waiter = waiter
            flusher = asyncio.ensure_future(self._flush_loop(follow))
            try:
                result = await waiter.run()
            except AmlwaitError as error:
                failures += 1
                self.arm_errors += 1
                follow.say(f"Azure ML could not be read: {error}")
                if failures >= self.settings.arm_error_limit or time.time() >= record.deadline:
                    await self._finish(
                        follow, BatchOutcome.FAILED, f"Azure ML kept failing: {error}", []
                    )
                    return
                await follow.clock.sleep(self.settings.outbox_retry.delay(failures + 1))
                continue
            finally:
                flusher.cancel()
                await asyncio.gather(flusher, return_exceptions=True)
            break
        if result.outcome is BatchOutcome.INTERRUPTED or follow.lost:
            return
        await self._finish(follow, result.outcome, _reason(result), summary_lines(result), result)

    async def _discover(self, follow: _Follow, workspace: WorkspaceRef) -> list[str] | None:
        """List the batch by its tag until ``expectedJobs`` jobs carry it."""
        record = follow.record
        expected = int(record.request["expectedJobs"])
        grace = self.settings.policy.not_found_grace
        give_up_at = min(record.created_at + grace, record.deadline)
        follow.say(
            f"Looking for {expected} jobs tagged {follow.tag!r} in {workspace} "
            f"(for up to {format_duration(max(0.0, give_up_at - time.time()))})"
        )
        seen = -1
        failures = 0
        while not follow.lost:
            try:
                listing = await self.source.list_jobs_by_tag(workspace, follow.tag)
                failures = 0
            except AmlwaitError as error:
                failures += 1
                self.arm_errors += 1
                follow.say(f"Azure ML could not be read: {error}")
                if failures >= self.settings.arm_error_limit:
                    await self._finish(
                        follow, BatchOutcome.FAILED, f"Azure ML kept failing: {error}", []
                    )
                    return None
                listing = None
            if listing is not None:
                names = sorted({job.name for job in listing})
                if len(names) >= expected:
                    follow.say(f"Found {len(names)} jobs tagged {follow.tag!r}")
                    return names
                if len(names) != seen:
                    seen = len(names)
                    follow.say(f"{seen} of {expected} jobs tagged {follow.tag!r} so far")
            now = time.time()
            if now >= give_up_at:
                found = max(seen, 0)
                reason = (
                    f"only {found} of {expected} jobs tagged {follow.tag!r} appeared "
                    f"within {format_duration(now - record.created_at)}"
                )
                await self._finish(follow, BatchOutcome.FAILED, reason, [])
                return None
            await self._flush(follow)
            await follow.clock.sleep(min(self.settings.policy.poll_interval, give_up_at - now))
        return None

    async def _flush_loop(self, follow: _Follow) -> None:
        while True:
            await asyncio.sleep(self.settings.progress_interval)
            try:
                await self._flush(follow)
            except Exception:
                log.exception("saving the progress of wait %s failed", follow.wait_id)

    async def _flush(self, follow: _Follow) -> None:
        """Send pending feed lines to the outbox and save the jobs' states."""
        lines = follow.lines.take()
        if lines:
            await asyncio.to_thread(
                self.store.enqueue, follow.wait_id, "feed", {"lines": lines}, now=time.time()
            )
            self._outbox_now.set()
        if follow.waiter is not None:
            states = [_job_document(job) for job in follow.waiter.tracker.jobs.values()]
            await self._save(follow, {"jobs": follow.jobs, "states": states})

    async def _save(self, follow: _Follow, document: dict[str, Any]) -> None:
        if document == follow.saved:
            return
        kept = await asyncio.to_thread(
            self.store.save_progress, follow.wait_id, self.owner, document, now=time.time()
        )
        follow.saved = document
        if not kept:
            follow.abandon()

    async def _finish(
        self,
        follow: _Follow,
        outcome: BatchOutcome,
        reason: str | None,
        summary: list[str],
        result: WaitResult | None = None,
    ) -> None:
        devops_result = "succeeded" if outcome is BatchOutcome.SUCCEEDED else "failed"
        if reason:
            follow.say(reason)
        follow.say(f"amlwait: the batch {outcome.value}; the task ends {devops_result}")
        states = (
            [_job_document(job) for job in result.jobs]
            if result is not None
            else list((follow.saved or {}).get("states", []))
        )
        document = {
            "jobs": follow.jobs,
            "states": states,
            "outcome": outcome.value,
            "reason": reason,
            "result": devops_result,
            "canceled": list(result.canceled) if result is not None else [],
        }
        text = "\n".join([*(summary or []), *([reason] if reason else [])]) + "\n"
        final: list[tuple[str, dict[str, Any]]] = [
            ("feed", {"lines": follow.lines.take()}),
            ("log", {"text": text}),
            ("completed", {"result": devops_result}),
        ]
        finished = await asyncio.to_thread(
            self.store.finish_wait,
            follow.wait_id,
            self.owner,
            outcome=outcome.value,
            result=document,
            final=final,
            now=time.time(),
        )
        if finished:
            self._outbox_now.set()
        else:
            log.warning("wait %s was finished elsewhere (lease lost)", follow.wait_id)

    # -- the outbox -----------------------------------------------------------------------

    async def _outbox_loop(self) -> None:
        while True:
            try:
                items = await asyncio.to_thread(
                    self.store.claim_outbox,
                    self.owner,
                    now=time.time(),
                    lease_seconds=self.settings.outbox_lease_seconds,
                )
            except Exception:
                log.exception("claiming outbox items failed")
                items = []
            by_wait: dict[str, list[OutboxItem]] = defaultdict(list)
            for item in sorted(items, key=lambda item: item.item_id):
                by_wait[item.wait_id].append(item)
            semaphore = asyncio.Semaphore(self.settings.concurrency)
            await asyncio.gather(
                *(self._deliver_in_order(batch, semaphore) for batch in by_wait.values())
            )
            if items:
                continue  # there may be more ready
            await _wait_for(self._outbox_now, self.settings.outbox_interval)
            self._outbox_now.clear()

    async def _deliver_in_order(
        self, items: list[OutboxItem], semaphore: asyncio.Semaphore
    ) -> None:
        async with semaphore:
            for item in items:
                await self._deliver(item)

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            record = await asyncio.to_thread(self.store.get_wait, item.wait_id)
            token = await asyncio.to_thread(self.store.auth_token, item.wait_id)
            if record is None or token is None:
                await asyncio.to_thread(
                    self.store.drop, item.item_id, self.owner, error="the wait's token is gone"
                )
                return
            callback = Callback.from_document(record.callback)
            try:
                await self._send(item, callback, token)
            except DevOpsError as error:
                self.callback_errors += 1
                await self._after_failure(item, error)
                return
            await asyncio.to_thread(self.store.delivered, item.item_id, self.owner, now=time.time())
        except Exception:
            log.exception("delivering outbox item %s failed", item.item_id)

    async def _send(self, item: OutboxItem, callback: Callback, token: str) -> None:
        payload = item.payload
        if item.kind == "completed":
            await self.devops.task_completed(callback, token, str(payload["result"]))
        elif item.kind == "feed":
            await self.devops.feed(callback, token, [str(line) for line in payload["lines"]])
        elif item.kind == "log":
            await self.devops.upload_log(callback, token, str(payload["text"]))
        else:
            raise DevOpsError(f"unknown outbox item kind {item.kind!r}", retryable=False)

    async def _after_failure(self, item: OutboxItem, error: DevOpsError) -> None:
        attempts = item.attempts + 1
        limit = (
            self.settings.completed_attempts
            if item.kind == "completed"
            else self.settings.feed_attempts
        )
        log.warning(
            "%s for wait %s failed (attempt %d): %s", item.kind, item.wait_id, attempts, error
        )
        if attempts >= limit or (not error.retryable and item.kind != "completed"):
            await asyncio.to_thread(self.store.drop, item.item_id, self.owner, error=str(error))
            return
        delay = self.settings.outbox_retry.delay(attempts + 1)
        await asyncio.to_thread(
            self.store.retry_later,
            item.item_id,
            self.owner,
            next_attempt_at=time.time() + delay,
            error=str(error),
        )


async def _wait_for(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` have passed."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        return


def _reason(result: WaitResult) -> str | None:
    if result.outcome is BatchOutcome.TIMED_OUT:
        unfinished = [job.name for job in result.jobs if not job.finished]
        text = f"deadline reached with {len(unfinished)} jobs unfinished"
        if result.canceled:
            text += f"; cancel requested for {len(result.canceled)}"
        return text
    if result.outcome is BatchOutcome.FAILED:
        bad = [job.name for job in result.jobs if job.outcome is not None and job.outcome.is_bad]
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        return f"{len(bad)} jobs ended badly: {shown}"
    return None
