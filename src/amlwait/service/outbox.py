"""The outbox sender: delivers each wait's stored messages to Azure DevOps, in order.

A message is one of three types, stored as ``(kind, payload)`` rows of the store's outbox:
:class:`FeedMessage` (console lines), :class:`LogMessage` (the final log) and
:class:`CompletedMessage` (``TaskCompleted``). The sender claims due rows, delivers those of
one wait in order (different waits in parallel, at most ``concurrency`` at a time), and
retries failures with capped exponential backoff: ``TaskCompleted`` until Azure DevOps
accepts it (it is marked delivered only then, so a crash re-sends rather than loses it),
feed lines and logs a few times only. Every ``now`` comes from the injected clock; the
loop itself waits in real time between rounds (or until :meth:`OutboxSender.wake`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

from amlwait.core.clock import Clock
from amlwait.redact import REDACTOR
from amlwait.service.devops_client import DevOpsClient, DevOpsError
from amlwait.service.models import Callback
from amlwait.service.settings import WatcherSettings
from amlwait.service.store import OutboxItem, Store

log = logging.getLogger("amlwait.service")


@dataclass(frozen=True)
class FeedMessage:
    """Console lines for the task's live feed (already time-stamped)."""

    kind: ClassVar[str] = "feed"
    lines: tuple[str, ...]

    def payload(self) -> dict[str, Any]:
        return {"lines": list(self.lines)}


@dataclass(frozen=True)
class LogMessage:
    """The task's log, uploaded as one text."""

    kind: ClassVar[str] = "log"
    text: str

    def payload(self) -> dict[str, Any]:
        return {"text": self.text}


@dataclass(frozen=True)
class CompletedMessage:
    """``TaskCompleted`` with ``result`` ``succeeded`` or ``failed``; the wait's last message."""

    kind: ClassVar[str] = "completed"
    result: str

    def payload(self) -> dict[str, Any]:
        return {"result": self.result}


Message = FeedMessage | LogMessage | CompletedMessage


def message_of(item: OutboxItem) -> Message:
    """The typed message a stored outbox row holds; DevOpsError (not retryable) if unknown."""
    payload = item.payload
    if item.kind == CompletedMessage.kind:
        return CompletedMessage(str(payload["result"]))
    if item.kind == FeedMessage.kind:
        return FeedMessage(tuple(str(line) for line in payload["lines"]))
    if item.kind == LogMessage.kind:
        return LogMessage(str(payload["text"]))
    raise DevOpsError(f"unknown outbox item kind {item.kind!r}", retryable=False)


class OutboxSender:
    """Delivers the outbox for one replica (``owner``) until its :meth:`run` is cancelled."""

    def __init__(
        self,
        store: Store,
        devops: DevOpsClient,
        *,
        owner: str,
        settings: WatcherSettings,
        clock: Clock,
    ) -> None:
        self.store = store
        self.devops = devops
        self.owner = owner
        self.settings = settings
        self.clock = clock
        self.errors = 0  # failed deliveries
        self._now = asyncio.Event()

    def wake(self) -> None:
        """Messages were just stored: claim them now rather than at the next round."""
        self._now.set()

    async def run(self) -> None:
        while True:
            items = await self._claim()
            by_wait: dict[str, list[OutboxItem]] = defaultdict(list)
            for item in sorted(items, key=lambda item: item.item_id):
                by_wait[item.wait_id].append(item)
            semaphore = asyncio.Semaphore(self.settings.concurrency)
            await asyncio.gather(
                *(self._deliver_in_order(batch, semaphore) for batch in by_wait.values())
            )
            if items:
                continue  # there may be more ready
            await wait_for(self._now, self.settings.outbox_interval)
            self._now.clear()

    async def _claim(self) -> list[OutboxItem]:
        try:
            return await asyncio.to_thread(
                self.store.claim_outbox,
                self.owner,
                now=self.clock.now(),
                lease_seconds=self.settings.outbox_lease_seconds,
            )
        except Exception:
            log.exception("claiming outbox items failed")
            return []

    async def _deliver_in_order(
        self, items: list[OutboxItem], semaphore: asyncio.Semaphore
    ) -> None:
        async with semaphore:
            for item in items:
                await self._deliver(item)

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            record = await asyncio.to_thread(self.store.get_wait, item.wait_id, with_result=False)
            token = await asyncio.to_thread(self.store.auth_token, item.wait_id)
            if record is None or token is None:
                await asyncio.to_thread(
                    self.store.drop, item.item_id, self.owner, error="the wait's token is gone"
                )
                return
            callback = Callback.from_document(record.callback)
            try:
                await self._send(message_of(item), callback, token)
            except DevOpsError as error:
                self.errors += 1
                await self._after_failure(item, error)
                return
            await asyncio.to_thread(
                self.store.delivered, item.item_id, self.owner, now=self.clock.now()
            )
            if item.kind == CompletedMessage.kind:
                REDACTOR.forget(token)  # the wait is over: its token is deleted from the store
        except Exception:
            log.exception("delivering outbox item %s failed", item.item_id)

    async def _send(self, message: Message, callback: Callback, token: str) -> None:
        if isinstance(message, CompletedMessage):
            await self.devops.task_completed(callback, token, message.result)
        elif isinstance(message, FeedMessage):
            await self.devops.feed(callback, token, list(message.lines))
        else:
            await self.devops.upload_log(callback, token, message.text)

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
            next_attempt_at=self.clock.now() + delay,
            error=str(error),
        )


async def wait_for(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` (real time) have passed."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        return
