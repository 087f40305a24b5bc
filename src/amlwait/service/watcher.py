"""One replica's work: follow the waits it holds a lease on, and deliver the outbox.

Two loops share one :class:`~amlwait.azureml.ArmJobSource` (one request budget):

- the **claim loop** renews the leases of the waits this replica follows, gives up those
  whose lease was lost, and claims waits nobody holds (new ones, and those of a replica that
  died). Each claimed wait runs one :class:`~amlwait.service.follow.Follow` (discover its
  jobs, wait for them, finish it; see :mod:`amlwait.service.follow`).
- the **outbox loop** (:class:`~amlwait.service.outbox.OutboxSender`) delivers the stored
  messages in order per wait, retrying failures.

Everything lives in the store, so a restarted replica simply claims again and resumes.
An Event Grid event for a run makes the waits following that job read it at once
(events may be late, missing or out of order: polling stays the source of truth).

One clock: every "now" (leases, deadlines, feed time stamps, outbox due times) is read from
the clock the watcher is given (real time by default), and the waits sleep on it. The two
loops pace themselves in real time (``claim_interval``, ``outbox_interval``), and so does
the progress flush (``progress_interval``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence

from amlwait.core.clock import Clock, SystemClock
from amlwait.core.source import JobSource
from amlwait.redact import scrub
from amlwait.service import heap
from amlwait.service.devops_client import DevOpsClient
from amlwait.service.follow import Follow, FollowContext
from amlwait.service.hooks import WaitFinished, WaitHook
from amlwait.service.models import RunEvent
from amlwait.service.outbox import OutboxSender, wait_for
from amlwait.service.settings import WatcherSettings, replica_id
from amlwait.service.store import Store

__all__ = ["WaitFinished", "WaitHook", "Watcher", "WatcherSettings", "replica_id"]

log = logging.getLogger("amlwait.service")


class ScrubSecrets(logging.Filter):
    """Replaces every secret the redactor knows (the waits' AuthTokens, the ARM token) in
    a record's message and traceback text: an Azure error may echo its Authorization
    header, and the service logs Azure's errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


if not any(isinstance(f, ScrubSecrets) for f in log.filters):
    log.addFilter(ScrubSecrets())

_MAX_CRASHED = 10_000  # waits remembered with a back-off; the oldest is forgotten first


class Watcher:
    """Follows waits and delivers callbacks until :meth:`stop`; see the module docstring.

    ``clock`` is the one clock of the replica (real time unless given); ``hooks`` are told
    about every wait this replica finishes (:class:`~amlwait.service.hooks.WaitHook`).
    """

    def __init__(
        self,
        store: Store,
        source: JobSource,
        devops: DevOpsClient,
        *,
        settings: WatcherSettings | None = None,
        owner: str | None = None,
        clock: Clock | None = None,
        hooks: Sequence[WaitHook] = (),
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.store = store
        self.source = source
        self.devops = devops
        self.settings = settings or WatcherSettings()
        self.owner = owner or replica_id()
        self.arm_errors = 0
        self.events_received = 0
        self.outbox = OutboxSender(
            store, devops, owner=self.owner, settings=self.settings, clock=self.clock
        )
        self._context = FollowContext(
            store=store,
            source=source,
            owner=self.owner,
            settings=self.settings,
            event_policy=self.settings.event_policy(),
            clock=self.clock,
            hooks=tuple(hooks),
            arm_failed=self._count_arm_error,
            queued=self.outbox.wake,
        )
        self._follows: dict[str, Follow] = {}
        # wait id -> (crashes in a row, not to be claimed again before): a wait whose follow
        # keeps raising is retried with back-off, not at every claim round.
        self._crashed: dict[str, tuple[int, float]] = {}
        self._claim_now = asyncio.Event()
        self._renewed_at = -math.inf  # time.monotonic() of the last renewal of the leases
        self._trimmed_at = -math.inf  # time.monotonic() of the last heap trim
        self._stopped = asyncio.Event()

    @property
    def callback_errors(self) -> int:
        """Failed deliveries to Azure DevOps so far."""
        return self.outbox.errors

    def _count_arm_error(self) -> None:
        self.arm_errors += 1

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
                    follow.hears_events(self._context.event_policy)
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
            asyncio.ensure_future(self.outbox.run()),
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

    @property
    def _claim_interval(self) -> float:
        return min(self.settings.claim_interval, self.settings.lease_seconds / 3)

    async def _claim_loop(self) -> None:
        interval = self._claim_interval
        while True:
            try:
                await self._claim_round()
            except Exception:  # the store may be briefly unreachable: try again next round
                log.exception("claiming waits failed")
            # What the rounds' reads and saves freed (see amlwait.service.heap), once per
            # interval: a round also runs at every POST, and a trim walks the whole heap.
            trimmed = time.monotonic()
            if trimmed - self._trimmed_at >= interval:
                self._trimmed_at = trimmed
                heap.trim()
            await wait_for(self._claim_now, interval)
            self._claim_now.clear()

    async def _claim_round(self) -> None:
        lease = self.settings.lease_seconds
        # A round runs at every new wait (nudge) too: the leases are renewed only once per
        # interval, so posting N waits costs N claims, not N renewals of every held lease.
        started = time.monotonic()
        renew = started - self._renewed_at >= self._claim_interval
        if self._follows and renew:
            self._renewed_at = started
            held = list(self._follows)
            kept = await asyncio.to_thread(
                self.store.renew_leases,
                self.owner,
                held,
                now=self.clock.now(),
                lease_seconds=lease,
            )
            for wait_id in set(held) - set(kept):
                follow = self._follows.get(wait_id)
                # A wait that ended while its lease was being renewed is not renewed, and
                # its follow may be gone already: that is no lost lease.
                if follow is None or follow.finishing:
                    continue
                log.warning("lost the lease of wait %s; another replica follows it", wait_id)
                follow.abandon()
        now = self.clock.now()
        # The waits followed here were renewed above: not claimed (and read) again.
        records = await asyncio.to_thread(
            self.store.claim_waits,
            self.owner,
            now=now,
            lease_seconds=lease,
            skip=frozenset(self._follows),
        )
        for record in records:
            if record.wait_id in self._follows or record.state != "waiting":
                continue
            if self._crashed.get(record.wait_id, (0, 0.0))[1] > now:
                continue
            follow = Follow(record, self._context)
            self._follows[record.wait_id] = follow
            follow.task = asyncio.ensure_future(self._run_follow(follow))

    async def _run_follow(self, follow: Follow) -> None:
        try:
            await follow.run()
            self._crashed.pop(follow.wait_id, None)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._crashed_again(follow)
        finally:
            self._follows.pop(follow.wait_id, None)

    def _crashed_again(self, follow: Follow) -> None:
        """A follow raised (Azure ML reads cannot: a store or a programming fault). Resume it
        after a back-off (the outbox retry policy: doubling to 5 minutes), with the traceback
        logged the first time only, so a fault that persists costs a few lines an hour; past
        its deadline it is finished as failed when the store lets us (see Follow.run)."""
        crashes = self._crashed.get(follow.wait_id, (0, 0.0))[0] + 1
        delay = self.settings.outbox_retry.delay(crashes + 1)
        if len(self._crashed) >= _MAX_CRASHED and follow.wait_id not in self._crashed:
            self._crashed.pop(next(iter(self._crashed)))
        self._crashed[follow.wait_id] = (crashes, self.clock.now() + delay)
        if crashes == 1:
            log.exception("following wait %s failed; it resumes later", follow.wait_id)
        else:
            log.warning(
                "following wait %s failed again (%d in a row); it resumes in %.0f s",
                follow.wait_id,
                crashes,
                delay,
            )
