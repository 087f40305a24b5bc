"""The waiting engine: the async shell around the sans-IO tracker.

One loop: read the jobs that are due (a paged LIST per workspace when the batch has a
tag, concurrent GETs otherwise), feed what was read to the tracker, tell the listener,
then sleep on the injected clock until the next job is due — never past the deadline.
All requests go through the job source, which owns retries and the request budget.

Bounds: every read stops at the deadline (:data:`~amlwait.throttle.read_deadline`, which
the job source also applies to requests in flight); a listing the source cannot use
(:class:`~amlwait.errors.ListingError`) costs that round a GET per due job, never a job
reported missing; the cancel phase after the wait (``--cancel-remaining``,
``--cancel-on-interrupt``) gets :func:`cancel_phase_seconds` more, then ends whatever the
service does. A wait that breaks still has a result: :meth:`Waiter.result_so_far`.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from amlwait.core.attempts import attempt_name, split_attempt
from amlwait.core.clock import Clock, SystemClock
from amlwait.core.deadline import Deadline
from amlwait.core.jobs import JobRef, WorkspaceRef
from amlwait.core.manifest import Manifest
from amlwait.core.policy import PollPolicy
from amlwait.core.schedule import GetJob, ListingSchedule, ListJobs
from amlwait.core.source import JobResubmitter, JobSource, RunReader
from amlwait.core.status import TERMINAL, JobStatus, Outcome
from amlwait.core.tracker import BatchOutcome, BatchTracker, Event, JobFinished, JobState
from amlwait.errors import ListingError
from amlwait.events import CancelSent, Listener, ListingFailed, Tick, WaitEvent, WaitStarted
from amlwait.redact import scrub
from amlwait.result import WaitResult
from amlwait.runfacts import DEFAULT_BUDGET as DEFAULT_RUN_FACTS_BUDGET
from amlwait.runfacts import RunFactsStep
from amlwait.throttle import DeadlineReached, read_deadline

DEFAULT_TIMEOUT = 48 * 3600.0
TICK_SECONDS = 30.0
# Jobs falling due within this share of the poll interval after the first one are read
# in the same wake: fewer wakes for big batches, and never a read before its due time.
COALESCE_SHARE = 0.02
COALESCE_MAX = 1.0
CANCEL_PHASE_MIN = 10.0
CANCEL_PHASE_MAX = 60.0


def cancel_phase_seconds(timeout: float) -> float:
    """How long cancelling may take after the wait ended: a tenth of the wait's timeout,
    at least ``CANCEL_PHASE_MIN`` (10 s) and at most ``CANCEL_PHASE_MAX`` (60 s). A
    hanging service cannot keep a 20-second wait alive for minutes."""
    return min(CANCEL_PHASE_MAX, max(CANCEL_PHASE_MIN, timeout / 10))


class ChangeFeed(Protocol):
    """Something that tells the engine which jobs changed (``amlwait.readpath``)."""

    @property
    def next_due(self) -> float:
        """When :meth:`poll` has work next (``inf``: never, as things stand)."""
        ...

    async def poll(self, waiter: Waiter) -> None:
        """Wake (``tracker.read_now``) the jobs that changed; called before each read."""
        ...


@dataclass(frozen=True)
class WaitOptions:
    """How to wait. ``timeout`` is a wall-clock duration from the start (0: read once)."""

    timeout: float = DEFAULT_TIMEOUT
    policy: PollPolicy = field(default_factory=PollPolicy)
    fail_fast: bool = False
    cancel_remaining: bool = False
    cancel_on_interrupt: bool = False
    concurrency: int = 16
    retries: int = 0  # resubmit a Failed job up to this many times (never a Canceled one)
    # Seconds the cancel phase may take after the wait ended; None: cancel_phase_seconds.
    cancel_phase: float | None = None
    # Seconds each read of run history/MLflow (reasons, true times) may take, within the
    # deadline; see amlwait.runfacts.
    run_facts_budget: float = DEFAULT_RUN_FACTS_BUDGET


class Waiter:
    """Waits for a batch of jobs. Use :func:`wait_for_jobs` unless you need ``stop()``."""

    def __init__(
        self,
        jobs: Iterable[JobRef],
        source: JobSource,
        *,
        options: WaitOptions | None = None,
        clock: Clock | None = None,
        tag: str | None = None,
        listener: Listener | None = None,
        on_retry: Callable[[list[JobRef]], None] | None = None,
        run_reader: RunReader | None = None,
        changes: ChangeFeed | None = None,
    ) -> None:
        """``run_reader``: where to read why jobs failed and when they ran; by default the
        source's own (:meth:`ArmJobSource.run_reader`), none for a source without one."""
        self.options = options or WaitOptions()
        self.changes = changes
        self.on_retry = on_retry
        self.clock = clock or SystemClock()
        self.source = source
        self.tag = tag
        self.listener = listener or (lambda event: None)
        self.started_at = self.clock.now()
        self.deadline = Deadline.after(self.started_at, self.options.timeout)
        self.tracker = BatchTracker(jobs, self.options.policy, self.started_at)
        self._stop = asyncio.Event()
        self._last_tick_at = -math.inf
        self._last_tick_finished = -1
        self.schedule = ListingSchedule(
            self.options.policy, tag=tag, concurrency=self.options.concurrency
        )
        self._listing_failing: set[WorkspaceRef] = set()
        self.run_facts = RunFactsStep(
            run_reader if run_reader is not None else _source_run_reader(source),
            self.clock,
            self.deadline,
            budget=self.options.run_facts_budget,
        )

    def stop(self) -> None:
        """Interrupt the wait (SIGINT/SIGTERM): it ends with outcome ``interrupted``."""
        self._stop.set()

    def _emit(self, event: WaitEvent) -> None:
        self.listener(event)

    def _emit_all(self, events: Iterable[WaitEvent]) -> None:
        for event in events:
            self._emit(event)

    async def run(self) -> WaitResult:
        try:
            return await self._run()
        finally:
            await self.run_facts.aclose()

    async def _run(self) -> WaitResult:
        jobs = list(self.tracker.jobs.values())
        workspaces = sorted({job.ref.workspace for job in jobs})
        self._emit(WaitStarted(jobs, workspaces, self.deadline.at, self.started_at, self.tag))
        interrupted = False
        first_pass = True
        while True:
            try:
                # With --timeout 0 the first pass still reads every job once.
                zero_timeout = self.options.timeout <= 0
                limit = math.inf if first_pass and zero_timeout else self.deadline.at
                done = await self._until_stopped(self._read_due(limit))
            except DeadlineReached:
                # A read could not be done (throttled or retrying) before the deadline:
                # nothing more can be learnt in time.
                self._tick(self.clock.now(), force=True)
                break
            first_pass = False
            if not done:
                interrupted = True
                break
            if self.options.retries and not await self._until_stopped(self._retry_failed()):
                interrupted = True
                break
            now = self.clock.now()
            self._tick(now)
            if self.tracker.all_finished:
                break
            if self.options.fail_fast and self.tracker.any_bad:
                break
            if self.deadline.expired(now):
                break
            slack = min(COALESCE_MAX, COALESCE_SHARE * self.options.policy.poll_interval)
            wake = self.deadline.clamp(self._next_wake() + slack)
            if not await self._until_stopped(self.clock.sleep(wake - now)):
                interrupted = True
                break
        return await self._finish(interrupted)

    async def _until_stopped(self, work: Awaitable[Any]) -> bool:
        """Run ``work``; False when the wait was stopped first (``work`` is cancelled)."""
        if self._stop.is_set():
            if asyncio.iscoroutine(work):
                work.close()
            return False
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            stopper.cancel()
            task.result()  # re-raise what the work raised
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    def _tick(self, now: float, *, force: bool = False) -> None:
        """Tell the listener how far the batch is: when a whole percent more jobs (what
        ``task.setprogress`` shows) or the last one finished, and otherwise at most every
        ``TICK_SECONDS``. Counting is O(N): per finished job it would make a 10,000-job
        batch count 10,000 jobs 10,000 times."""
        finished = self.tracker.finished_count
        jobs = len(self.tracker.jobs)
        quiet = now - self._last_tick_at < TICK_SECONDS
        newly = finished - self._last_tick_finished
        progressed = newly != 0 and (newly * 100 >= jobs or finished >= jobs)
        if not force and quiet and not progressed:
            return
        self._last_tick_at, self._last_tick_finished = now, finished
        total = sum(1 for job in self.tracker.jobs.values() if job.current)
        self._emit(
            Tick(now, dict(self.tracker.counts()), self.deadline.remaining(now), finished, total)
        )

    # -- reading ------------------------------------------------------------------------

    def _next_wake(self) -> float:
        wake = self.tracker.next_wake()
        if self.changes is not None:
            wake = min(wake, self.changes.next_due)
        return wake

    async def _read_due(self, limit: float) -> None:
        now = self.clock.now()
        if self.changes is not None and now < limit:
            read_deadline.set(limit)
            await self.changes.poll(self)  # wakes the jobs it says changed
            now = self.clock.now()
        due = self.tracker.due(now)
        if not due:
            return
        if now >= limit:
            raise DeadlineReached
        read_deadline.set(limit)
        work: list[Awaitable[None]] = []
        for read in self.schedule.plan(due, now, self.tracker.woken):
            if isinstance(read, ListJobs):
                work.append(self._read_by_listing(read))
            else:
                work.append(self._read_one(read))
        await _gather_bounded(work, self.options.concurrency)

    def use_policy(self, policy: PollPolicy) -> None:
        """Poll by ``policy`` from the next read on (the service slows its safety-net
        polling down once Event Grid events arrive for a wait)."""
        self.options = replace(self.options, policy=policy)
        self.tracker.policy = policy
        self.schedule.policy = policy

    async def _read_one(self, read: GetJob) -> None:
        snapshot = await self.source.get_job(read.ref)
        now = self.clock.now()
        await self._tell(self.tracker.observe(read.ref, snapshot, now, batch_due=read.batch_due))

    async def _read_by_listing(self, read: ListJobs) -> None:
        assert self.tag is not None
        try:
            listing = await self.source.list_jobs_by_tag(read.workspace, self.tag)
        except ListingError as error:
            # Unusable this round (a nextLink loop, too many pages): read the due jobs one
            # by one; nothing is concluded from what the listing lacked.
            now = self.clock.now()
            if read.workspace not in self._listing_failing:  # once per episode
                self._listing_failing.add(read.workspace)
                self._emit(ListingFailed(read.workspace, scrub(str(error)), now))
            self.schedule.listing_failed(read, now)
            gets = [self._read_one(GetJob(job.ref)) for job in read.due]
            await _gather_bounded(gets, self.options.concurrency)
            return
        self._listing_failing.discard(read.workspace)
        now = self.clock.now()
        seen = self.schedule.take_listing(read, listing, self.tracker.jobs, now)
        events: list[Event] = []
        for job, snapshot in seen.observed:
            events += self.tracker.observe(job.ref, snapshot, now, batch_due=seen.batch_due)
        await self._tell(events)
        reads = [self._read_one(GetJob(ref)) for ref in seen.missing]
        await _gather_bounded(reads, self.options.concurrency)

    async def _tell(self, events: Sequence[Event]) -> None:
        """Tell the listener ``events``, once the jobs among them that ended Failed have
        their reasons and times (a bounded read that never fails the wait)."""
        ended = [event.job for event in events if isinstance(event, JobFinished)]
        if ended:
            await self.run_facts.explain(ended)
        self._emit_all(events)

    # -- retrying -----------------------------------------------------------------------

    async def _retry_failed(self) -> None:
        """Resubmit every newest attempt that ended Failed and has retries left."""
        candidates = [
            job
            for job in self.tracker.current()
            if job.outcome is Outcome.FAILED
            and job.status == JobStatus.FAILED.value
            and job.attempt <= self.options.retries
        ]
        if not candidates:
            return
        if not hasattr(self.source, "resubmit_job"):
            raise TypeError("this job source cannot resubmit jobs (--retries)")
        resubmitter: JobResubmitter = self.source  # type: ignore[assignment]

        async def retry(job: JobState) -> None:
            # The name says which attempt this is (the manifest may already name a _r2).
            base, number = split_attempt(job.name)
            new_name = attempt_name(base, number + 1)
            new_ref = await resubmitter.resubmit_job(job.ref, new_name)
            self._emit(self.tracker.retry(job.ref, new_ref, self.clock.now()))

        await _gather_bounded([retry(job) for job in candidates], self.options.concurrency)
        if self.on_retry is not None:
            self.on_retry(self.tracker.newest_attempts())

    # -- ending -------------------------------------------------------------------------

    def result_so_far(self, error: BaseException) -> WaitResult:
        """The result when the wait itself broke: outcome ``error``, every job as last
        read, the error's one line (scrubbed of every token). Nothing is cancelled."""
        return _error_result(
            self.tracker,
            error,
            self.source.requests_sent,
            self.started_at,
            self.deadline,
            self.clock.now(),
            self.tag,
        )

    async def _finish(self, interrupted: bool) -> WaitResult:
        now = self.clock.now()
        canceled: list[str] = []
        # Only jobs still going are cancelled: at a fail-fast stop, at the deadline, or
        # on an interrupt when asked (never by default: a restarted waiter must not kill
        # training that is still wanted).
        if interrupted:
            wants_cancel = self.options.cancel_on_interrupt
        else:
            wants_cancel = self.options.cancel_remaining
        if wants_cancel:
            phase = self.options.cancel_phase
            if phase is None:
                phase = cancel_phase_seconds(self.options.timeout)
            phase_end = now + phase
            token = read_deadline.set(phase_end)
            try:
                canceled = await self._cancel_unfinished(phase_end)
            finally:
                read_deadline.reset(token)
        if not interrupted:
            await self.run_facts.time_ended(list(self.tracker.jobs.values()))
        self.tracker.close(self.clock.now())
        outcome = self.tracker.outcome(interrupted=interrupted)
        return WaitResult(
            outcome=outcome,
            jobs=list(self.tracker.jobs.values()),
            requests=self.source.requests_sent + self.run_facts.requests_sent,
            started_at=self.started_at,
            ended_at=now,
            deadline=self.deadline.at,
            canceled=canceled,
            tag=self.tag,
        )

    async def _cancel_unfinished(self, phase_end: float) -> list[str]:
        canceled: list[str] = []

        async def cancel(job: JobState) -> None:
            if job.status in TERMINAL:
                return
            try:
                await self.source.cancel_job(job.ref)
            except DeadlineReached:
                late = f"the cancel phase ended ({_iso(phase_end)}) before the service answered"
                self._emit(CancelSent(job, self.clock.now(), error=late))
                return
            except Exception as error:  # reported, never fatal: the wait is ending anyway
                self._emit(CancelSent(job, self.clock.now(), error=scrub(str(error))))
                return
            canceled.append(job.name)
            self._emit(CancelSent(job, self.clock.now()))

        await _gather_bounded(
            [cancel(job) for job in self.tracker.unfinished()], self.options.concurrency
        )
        return sorted(canceled)


def _iso(moment: float) -> str:
    stamp = _dt.datetime.fromtimestamp(moment, tz=_dt.timezone.utc)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def _error_result(
    tracker: BatchTracker,
    error: BaseException,
    requests: int,
    started_at: float,
    deadline: Deadline,
    now: float,
    tag: str | None,
) -> WaitResult:
    tracker.close(now)
    return WaitResult(
        outcome=BatchOutcome.ERROR,
        jobs=list(tracker.jobs.values()),
        requests=requests,
        started_at=started_at,
        ended_at=now,
        deadline=deadline.at,
        tag=tag,
        error=scrub(str(error) or type(error).__name__),
    )


def unread_result(
    jobs: Iterable[JobRef],
    error: BaseException,
    *,
    options: WaitOptions | None = None,
    tag: str | None = None,
    clock: Clock | None = None,
) -> WaitResult:
    """The result of a wait that broke before it could read anything: outcome ``error``,
    every job unread."""
    options = options or WaitOptions()
    now = (clock or SystemClock()).now()
    tracker = BatchTracker(jobs, options.policy, now)
    return _error_result(tracker, error, 0, now, Deadline.after(now, options.timeout), now, tag)


def _source_run_reader(source: JobSource) -> RunReader | None:
    """The source's run reader, when it offers one (the ARM source does)."""
    factory = getattr(source, "run_reader", None)
    return factory() if callable(factory) else None


async def _gather_bounded(work: Sequence[Awaitable[None]], limit: int) -> None:
    """Run ``work`` at most ``limit`` at a time; the first error cancels the rest."""
    if not work:
        return
    semaphore = asyncio.Semaphore(max(1, limit))

    async def bounded(item: Awaitable[None]) -> None:
        async with semaphore:
            await item

    tasks = [asyncio.ensure_future(bounded(item)) for item in work]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def wait_for_jobs(
    jobs: Manifest | Iterable[JobRef],
    *,
    source: JobSource,
    options: WaitOptions | None = None,
    clock: Clock | None = None,
    tag: str | None = None,
    listener: Listener | None = None,
) -> WaitResult:
    """Wait until every job has ended (or the deadline passes) and say how it went.

    ``jobs`` is a :class:`~amlwait.core.manifest.Manifest` (its tag is used) or job
    references. The result's ``outcome`` is ``succeeded`` when every job Completed,
    ``failed`` when any ended badly (even if others were still running at the deadline),
    ``timed_out`` when the deadline passed with jobs unfinished, ``interrupted`` after
    :meth:`Waiter.stop`.
    """
    if isinstance(jobs, Manifest):
        tag = tag if tag is not None else jobs.tag
        jobs = jobs.jobs
    waiter = Waiter(jobs, source, options=options, clock=clock, tag=tag, listener=listener)
    return await waiter.run()


def wait_for_jobs_sync(
    jobs: Manifest | Iterable[JobRef],
    *,
    source: JobSource | None = None,
    options: WaitOptions | None = None,
    clock: Clock | None = None,
    tag: str | None = None,
    listener: Listener | None = None,
) -> WaitResult:
    """:func:`wait_for_jobs` for code without an event loop.

    Without ``source`` it opens an :class:`~amlwait.azureml.arm.ArmJobSource` from the
    environment (``AMLWAIT_ARM_ENDPOINT``, ``AMLWAIT_ACCESS_TOKEN`` or
    ``DefaultAzureCredential``) inside its own event loop and closes it before returning:
    an async HTTP client belongs to the loop it was used in, so a source created outside
    this call could not be closed afterwards. A ``source`` passed in stays the caller's
    to close.
    """

    async def run() -> WaitResult:
        if source is not None:
            return await wait_for_jobs(
                jobs, source=source, options=options, clock=clock, tag=tag, listener=listener
            )
        from amlwait.azureml.arm import ArmJobSource

        async with ArmJobSource(clock=clock) as own:
            return await wait_for_jobs(
                jobs, source=own, options=options, clock=clock, tag=tag, listener=listener
            )

    return asyncio.run(run())
