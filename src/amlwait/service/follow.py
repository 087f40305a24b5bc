"""Following one wait: discover its jobs, wait for them, finish it.

A :class:`Follow` is created by the watcher for each wait it holds a lease on. When the
request named no jobs, the batch is first listed by its tag until ``expectedJobs`` jobs
carry it (it fails if a listing answered after the not-found grace still shows fewer; a
failed or late read is not such an answer). Then one
:class:`~amlwait.waiter.Waiter` reads the batch; progress (jobs, statuses) is saved with the
lease and feed lines go to the outbox. When the batch found by its tag is one pipeline job
(``jobType: Pipeline``, as ``submit --as-pipeline`` makes it), the pipeline job decides the
outcome and, once it ended, its steps are read once from run history and reported one per
circuit (:func:`amlwait.pipeline_wait.per_circuit`, as ``amlwait wait`` does on a pipeline
manifest): the feed, the summary log, the failure reason and the stored states name the
circuits. At the end :meth:`Store.finish_wait` stores the
outcome together with the closing feed lines, the summary log and the ``TaskCompleted``
message, in one step, and every :class:`~amlwait.service.hooks.WaitHook` is told.

Every "now" is read from the one injected clock (the watcher's), and a wait sleeps on a
:class:`~amlwait.service.wakeable_clock.WakeableClock` over that clock, so an Event Grid
event can cut a sleep short.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from amlwait.console import PlainReporter, summary_lines
from amlwait.core.clock import Clock
from amlwait.core.duration import format_duration
from amlwait.core.jobs import (
    JobRef,
    JobSnapshot,
    WorkspaceRef,
    job_name_problem,
    workspace_ref_problem,
)
from amlwait.core.pipeline import PIPELINE_JOB_TYPE
from amlwait.core.policy import PollPolicy
from amlwait.core.source import JobSource, RetryingSource
from amlwait.core.tracker import BatchOutcome, JobState
from amlwait.core.wording import count
from amlwait.errors import AmlwaitError
from amlwait.pipeline_wait import per_circuit
from amlwait.redact import scrub
from amlwait.result import WaitResult
from amlwait.service.devops_client import feed_line
from amlwait.service.hooks import WaitFinished, WaitHook
from amlwait.service.outbox import CompletedMessage, FeedMessage, LogMessage, Message
from amlwait.service.settings import WatcherSettings
from amlwait.service.store import Store, WaitRecord
from amlwait.service.wakeable_clock import WakeableClock
from amlwait.waiter import Waiter, WaitOptions

log = logging.getLogger("amlwait.service")

MAX_FEED_LINES = 200  # per flush; the final log has every job anyway
_MIN_READ_SECONDS = 1.0  # a listing gets at least this long, even right at its deadline
MAX_PROBLEM_CHARS = 300  # of an error's text in a feed line or a stored reason


def read_problem(error: BaseException) -> str:
    """One scrubbed line saying what a failed read raised. An :class:`AmlwaitError` is
    already written for users; anything else (malformed JSON, an invalid URL, a bug) is
    named by its type, since its text was not."""
    text = str(error) if isinstance(error, AmlwaitError) else f"{type(error).__name__}: {error}"
    text = scrub(" ".join(text.split()))
    return text if len(text) <= MAX_PROBLEM_CHARS else text[: MAX_PROBLEM_CHARS - 1] + "…"


class FeedLines(io.StringIO):
    """Where the reporter prints: each line time-stamped (by ``clock``) for the feed."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.pending: list[str] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.pending.append(feed_line(scrub(line), self.clock.now()))
        return len(text)

    def take(self) -> list[str]:
        """The lines written since the last take; at most ``MAX_FEED_LINES`` and a note."""
        taken, self.pending = self.pending, []
        if len(taken) > MAX_FEED_LINES:
            dropped = len(taken) - MAX_FEED_LINES
            note = f"... {dropped} more lines (the final log lists every job)"
            note = feed_line(note, self.clock.now())
            taken = [*taken[:MAX_FEED_LINES], note]
        return taken


@dataclass(frozen=True)
class FollowContext:
    """What every follow of one watcher shares: its store, source, owner, settings, clock
    and hooks, and how to tell the watcher about an Azure ML failure and a stored message."""

    store: Store
    source: JobSource
    owner: str
    settings: WatcherSettings
    event_policy: PollPolicy
    clock: Clock
    hooks: Sequence[WaitHook]
    arm_failed: Callable[[], None]
    queued: Callable[[], None]


class Follow:
    """One wait this replica follows; :meth:`run` discovers, waits, and finishes it."""

    def __init__(self, record: WaitRecord, context: FollowContext) -> None:
        self.record = record
        self.context = context
        self.clock = WakeableClock(context.clock)
        self.lines = FeedLines(context.clock)
        self.waiter: Waiter | None = None
        self.jobs: list[str] = []
        self.job_set: frozenset[str] = frozenset()  # ``jobs``, for an event's lookup
        self.pipeline = False  # ``jobs`` is one pipeline job: report its steps at the end
        self.task: asyncio.Task[None] | None = None
        self.saved: dict[str, Any] | None = None
        self.lost = False
        self.evented = False
        self.finishing = False  # _finish has begun: the wait ends here or was ended elsewhere

    @property
    def wait_id(self) -> str:
        return self.record.wait_id

    @property
    def tag(self) -> str:
        return str(self.record.request["tag"])

    def say(self, text: str) -> None:
        self.lines.write(text + "\n")

    # -- told by the watcher ------------------------------------------------------------

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

    # -- the wait -------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the wait until it is finished here, or the lease is lost."""
        request = self.record.request
        workspace = WorkspaceRef(
            str(request["subscription"]), str(request["resourceGroup"]), str(request["workspace"])
        )
        saved = self.record.result or {}
        names = list(request.get("jobs") or saved.get("jobs") or [])
        # A wait stored before names were checked this tightly must not reach a request.
        problem = workspace_ref_problem(
            workspace.subscription, workspace.resource_group, workspace.workspace
        ) or next(filter(None, map(job_name_problem, names)), None)
        if problem is not None:
            await self._finish(BatchOutcome.FAILED, f"the wait cannot be followed: {problem}", [])
            return
        self.pipeline = bool(saved.get("pipeline"))
        if saved:
            self.say(f"amlwait service {self.context.owner} resumes this wait")
        if not names:
            discovered = await self._discover(workspace)
            if discovered is None:
                return
            names = discovered
        self.jobs = names
        self.job_set = frozenset(names)
        await self._save(self._progress([]))
        refs = [JobRef(workspace, name) for name in names]
        result = await self._wait(refs)
        if result is None or result.outcome is BatchOutcome.INTERRUPTED or self.lost:
            return
        if self.pipeline:
            result = await self._per_circuit(result, refs[0])
        retrying = _still_retrying(self.context.source)
        reason = _reason(result, retrying)
        await self._finish(result.outcome, reason, summary_lines(result), result)

    async def _discover(self, workspace: WorkspaceRef) -> list[str] | None:
        """List the batch by its tag until ``expectedJobs`` jobs carry it.

        None when the wait ended here (finished as failed) or the lease was lost.
        """
        record, settings = self.record, self.context.settings
        expected = int(record.request["expectedJobs"])
        give_up_at = min(record.created_at + settings.policy.not_found_grace, record.deadline)
        left = max(0.0, give_up_at - self.clock.now())
        self.say(
            f"Looking for {count(expected, 'job')} tagged {self.tag!r} in {workspace} "
            f"(for up to {format_duration(left)})"
        )
        seen = -1
        failures = 0
        while not self.lost:
            try:
                # Bounded by the wait's deadline, so a source that hangs or retries forever
                # cannot hold the wait past its end (TimeoutError counts as a failure). Not
                # by the grace: a listing may wait long for a slot in the replica's request
                # budget, and its answer, however late, says whether the jobs are there.
                left = max(0.0, record.deadline - self.clock.now())
                listing = await self._list_tagged(workspace, max(left, _MIN_READ_SECONDS))
                failures = 0
            except Exception as error:  # whatever a read raises, the wait ends (see _read_failed)
                failures += 1
                past_deadline = self.clock.now() >= record.deadline
                if await self._read_failed(error, failures, past_deadline=past_deadline):
                    return None
                listing = None
            if listing is not None:
                names = sorted({job.name for job in listing})
                if len(names) >= expected:
                    self.say(f"Found {count(len(names), 'job')} tagged {self.tag!r}")
                    self.pipeline = len(listing) == 1 and listing[0].job_type == PIPELINE_JOB_TYPE
                    if self.pipeline:
                        self.say(
                            f"{names[0]} is a pipeline job: it decides the outcome, and its "
                            "steps are reported per circuit when it ends"
                        )
                    return names
                if len(names) != seen:
                    seen = len(names)
                    self.say(f"{seen} of {expected} jobs tagged {self.tag!r} so far")
            now = self.clock.now()
            # Only a listing that answered decides that the jobs did not appear: a failed
            # read says nothing about them (_read_failed ends the wait when reads keep
            # failing, or at the deadline).
            if listing is not None and now >= give_up_at:
                reason = (
                    f"only {seen} of {expected} jobs tagged {self.tag!r} appeared "
                    f"within {format_duration(now - record.created_at)}"
                )
                await self._finish(BatchOutcome.FAILED, reason, [])
                return None
            await self.flush()
            pause = settings.policy.poll_interval
            if now < give_up_at:
                pause = min(pause, give_up_at - now)
            await self.clock.sleep(min(pause, max(0.0, record.deadline - now)))
        return None

    async def _list_tagged(self, workspace: WorkspaceRef, timeout: float) -> list[JobSnapshot]:
        """The jobs tagged with the wait's tag, within ``timeout`` seconds; a TimeoutError
        that says which read it cut short and after how long (the feed and the log show it)."""
        try:
            return await asyncio.wait_for(
                self.context.source.list_jobs_by_tag(workspace, self.tag), timeout=timeout
            )
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"listing the jobs tagged {self.tag!r} got no answer within "
                f"{format_duration(timeout)}"
            ) from None

    async def _wait(self, refs: list[JobRef]) -> WaitResult | None:
        """Run a waiter over ``refs``, again after an Azure ML failure (a few times).

        None when the wait ended here (Azure ML kept failing) or the lease was lost.
        """
        failures = 0
        while not self.lost:
            waiter = Waiter(
                refs,
                self.context.source,
                options=self._options(),
                clock=self.clock,
                tag=self.tag,
                listener=PlainReporter(self.lines),
            )
            self.waiter = waiter
            flusher = asyncio.ensure_future(self._flush_loop())
            try:
                return await waiter.run()
            except Exception as error:  # whatever a read raises, the wait ends (see _read_failed)
                failures += 1
                past_deadline = self.clock.now() >= self.record.deadline
                if await self._read_failed(error, failures, past_deadline=past_deadline):
                    return None
                # Still inside the try: progress keeps being flushed while backing off. The
                # back-off never outlasts the deadline, so the deadline always ends the wait.
                delay = self.context.settings.outbox_retry.delay(failures + 1)
                left = self.record.deadline - self.clock.now()
                await self.clock.sleep(max(0.0, min(delay, left)))
            finally:
                flusher.cancel()
                await asyncio.gather(flusher, return_exceptions=True)
        return None

    async def _per_circuit(self, result: WaitResult, pipeline: JobRef) -> WaitResult:
        """The pipeline job's result per step, or as it is (with a feed line) when the steps
        cannot be read: the outcome stays the pipeline job's either way."""
        self.say(f"Reading the steps of pipeline job {pipeline.name}")
        try:
            made = await per_circuit(result, pipeline, self.context.source)
        except Exception as error:  # a report that cannot be made must not lose the outcome
            self.say(
                f"the steps of pipeline job {pipeline.name} could not be read "
                f"({read_problem(error)}); the reports show the pipeline job alone"
            )
            return result
        if made.problem is not None:
            self.say(made.problem)
        return made.result

    def _progress(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        """The progress document saved with the lease (a resumed wait reads it back)."""
        document: dict[str, Any] = {"jobs": self.jobs, "states": states}
        if self.pipeline:
            document["pipeline"] = True
        return document

    def _options(self) -> WaitOptions:
        request, settings = self.record.request, self.context.settings
        return WaitOptions(
            timeout=max(0.0, self.record.deadline - self.clock.now()),
            policy=self.context.event_policy if self.evented else settings.policy,
            fail_fast=bool(request.get("failFast", False)),
            cancel_remaining=bool(request.get("cancelRemaining", False)),
            concurrency=settings.concurrency,
        )

    async def _read_failed(self, error: Exception, failures: int, *, past_deadline: bool) -> bool:
        """Count a failed Azure ML read, whatever it raised; finish the wait as failed (True)
        after ``arm_error_limit`` failures in a row, or at once past the deadline. The feed
        gets one line per failure, and failures are spaced by the caller's back-off, so a
        read that always fails costs at most ``arm_error_limit`` lines and log entries."""
        self.context.arm_failed()
        problem = read_problem(error)
        retrying = _still_retrying(self.context.source)
        if isinstance(error, (TimeoutError, asyncio.TimeoutError)) and retrying:
            problem = read_problem(RuntimeError(f"still retrying {retrying}"))
        self.say(f"Azure ML could not be read: {problem}")
        if not isinstance(error, AmlwaitError):
            log.warning(
                "reading Azure ML for wait %s failed (%d of %d): %s",
                self.wait_id,
                failures,
                self.context.settings.arm_error_limit,
                problem,
            )
        if past_deadline:
            reason = f"deadline reached; Azure ML could not be read: {problem}"
        elif failures >= self.context.settings.arm_error_limit:
            reason = f"Azure ML kept failing: {problem}"
        else:
            return False
        await self._finish(BatchOutcome.FAILED, reason, [])
        return True

    # -- progress ---------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.context.settings.progress_interval)
            try:
                await self.flush()
            except Exception:
                log.exception("saving the progress of wait %s failed", self.wait_id)

    async def flush(self) -> None:
        """Send pending feed lines to the outbox and save the jobs' states."""
        lines = self.lines.take()
        if lines:
            message = FeedMessage(tuple(lines))
            await asyncio.to_thread(
                self.context.store.enqueue,
                self.wait_id,
                message.kind,
                message.payload(),
                now=self.clock.now(),
            )
            self.context.queued()
        if self.waiter is not None:
            states = [_job_document(job) for job in self.waiter.tracker.jobs.values()]
            await self._save(self._progress(states))

    async def _save(self, document: dict[str, Any]) -> None:
        if document == self.saved:
            return
        kept = await asyncio.to_thread(
            self.context.store.save_progress,
            self.wait_id,
            self.context.owner,
            document,
            now=self.clock.now(),
        )
        self.saved = document
        if not kept:
            self.abandon()

    # -- the end ----------------------------------------------------------------------------

    async def _finish(
        self,
        outcome: BatchOutcome,
        reason: str | None,
        summary: list[str],
        result: WaitResult | None = None,
    ) -> None:
        """Store the outcome and the final messages in one step, then tell the hooks."""
        self.finishing = True
        reason = scrub(reason) if reason else reason
        devops_result = "succeeded" if outcome is BatchOutcome.SUCCEEDED else "failed"
        if reason:
            self.say(reason)
        self.say(f"amlwait: the batch {outcome.value}; the task ends {devops_result}")
        document = self._final_document(outcome, reason, devops_result, result)
        text = "\n".join([*(summary or []), *([reason] if reason else [])]) + "\n"
        final: list[Message] = [
            FeedMessage(tuple(self.lines.take())),
            LogMessage(text),
            CompletedMessage(devops_result),
        ]
        now = self.clock.now()
        finished = await asyncio.to_thread(
            self.context.store.finish_wait,
            self.wait_id,
            self.context.owner,
            outcome=outcome.value,
            result=document,
            final=[(message.kind, message.payload()) for message in final],
            now=now,
        )
        if finished:
            self.context.queued()
        else:
            log.warning("wait %s was finished elsewhere (lease lost)", self.wait_id)
        self._tell_hooks(
            WaitFinished(
                wait_id=self.wait_id,
                tag=self.tag,
                outcome=outcome,
                devops_result=devops_result,
                reason=reason,
                jobs=tuple(self.jobs),
                job_counts=_job_counts(result),
                requests=self.context.source.requests_sent,
                created_at=self.record.created_at,
                finished_at=now,
                recorded=finished,
                result=result,
            )
        )

    def _final_document(
        self,
        outcome: BatchOutcome,
        reason: str | None,
        devops_result: str,
        result: WaitResult | None,
    ) -> dict[str, Any]:
        """The wait's progress document at its end (what ``GET /v1/waits/{id}`` shows)."""
        states = (
            [_job_document(job) for job in result.jobs]
            if result is not None
            else list((self.saved or {}).get("states", []))
        )
        return {
            **self._progress(states),
            "outcome": outcome.value,
            "reason": reason,
            "result": devops_result,
            "canceled": list(result.canceled) if result is not None else [],
        }

    def _tell_hooks(self, record: WaitFinished) -> None:
        for hook in self.context.hooks:
            try:
                hook.on_wait_finished(record)
            except Exception:
                log.exception("a hook failed on the end of wait %s", self.wait_id)


def _job_document(job: JobState) -> dict[str, Any]:
    return {
        "name": job.name,
        "status": job.status,
        "outcome": job.outcome.value if job.outcome else None,
        "reason": job.reason,
        "link": job.link,
    }


def _job_counts(result: WaitResult | None) -> dict[str, int]:
    if result is None:
        return {}
    return dict(Counter(job.outcome.value if job.outcome else "unfinished" for job in result.jobs))


def _still_retrying(source: JobSource) -> str | None:
    """The read ``source`` is still retrying, if it is a source that says so."""
    return source.last_problem if isinstance(source, RetryingSource) else None


def _reason(result: WaitResult, retrying: str | None = None) -> str | None:
    """Why a wait did not succeed; ``retrying`` is the read the source was still retrying
    when the deadline came (see ``ArmJobSource.last_problem``)."""
    if result.outcome is BatchOutcome.TIMED_OUT:
        unfinished = [job.name for job in result.jobs if not job.finished]
        text = f"deadline reached with {count(len(unfinished), 'job')} unfinished"
        if result.canceled:
            text += f"; cancel requested for {len(result.canceled)}"
        if retrying:
            text += f"; Azure ML could not be read: still retrying {retrying}"
        return scrub(text)
    if result.outcome is BatchOutcome.FAILED:
        bad = [job.name for job in result.jobs if job.outcome is not None and job.outcome.is_bad]
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        return f"{count(len(bad), 'job')} ended badly: {shown}"
    return None
