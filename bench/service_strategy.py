"""Strategy (4): the amlwait service, told about job changes by Event Grid.

The child runs the service's own parts in its event loop: the Starlette app on a loopback
port, a :class:`~amlwait.service.watcher.Watcher` on a SQLite store reading the simulator
through :class:`~amlwait.azureml.ArmJobSource`, and a fake Azure DevOps plan API for the
callback. The wait is created the way ``InvokeRESTAPI@1`` creates it (headers and a body
naming the batch tag and the job count, not the jobs).

Event Grid is simulated from the same timelines: each status change is delivered as a
``RunStatusChanged`` event (``RunCompleted`` for a completion) to the service's webhook
over HTTP, ``EVENT_DELAY`` seconds after it happened. Deliveries can be lost (the
documentation warns failed runs may send none): ``LOST_SHARE`` of all events and
``LOST_FAILED_SHARE`` of the events of runs that failed never arrive, so the safety-net
polling has to find those.

:class:`EventClock` is the virtual clock with the deliveries on it: whoever sleeps past a
delivery's moment first stops there and delivers it (the webhook may wake the wait), then
sleeps on. A sleep the delivery woke is cut short by the service's own wakeable clock.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from amlwait.azureml.arm import ArmJobSource
from amlwait.azureml.credentials import StaticToken
from amlwait.core.clock import Clock, VirtualClock
from amlwait.core.retry import RetryPolicy
from amlwait.core.tracker import BatchOutcome
from amlwait.result import WaitResult
from amlwait.service.app import create_app
from amlwait.service.devops_client import DevOpsClient
from amlwait.service.hooks import WaitFinished
from amlwait.service.store import open_store
from amlwait.service.testing import FakeDevOps, callback_headers, wait_body
from amlwait.service.watcher import Watcher, WatcherSettings
from bench.scenario import EVENT_DELAY, TAG, ScriptedJob
from bench.sim import WS, thread_cpu

LOST_SHARE = 0.01
LOST_FAILED_SHARE = 0.5
SERVICE_KEY = "bench-service-key-0123456789"
EVENTGRID_KEY = "bench-eventgrid-key-0123456789"
CALLBACK_WAIT = 60.0  # real seconds to wait for TaskCompleted after the wait ended
# ``amlwait serve``'s defaults, but leases long enough for a virtual clock: the claim loop
# renews leases every few real seconds, while the virtual time jumps hours meanwhile. One
# replica competes with nobody, so a lease that never runs out changes nothing else.
SETTINGS = WatcherSettings(lease_seconds=30 * 86400.0, outbox_lease_seconds=30 * 86400.0)

# (moment, run id, status, event id): an event is built as a dict only when it is
# delivered. 50,000 ready-made dicts (N = 10,000) held ~60 MB for the whole run.
Delivery = tuple[float, str, str, int]


def event_of(delivery: Delivery) -> dict[str, Any]:
    """A delivery as the Event Grid event the webhook receives."""
    _, name, status, event_id = delivery
    kind = "RunCompleted" if status == "Completed" else "RunStatusChanged"
    return {
        "id": str(uuid.UUID(int=event_id)),
        "eventType": f"Microsoft.MachineLearningServices.{kind}",
        "subject": f"experiments/bench/runs/{name}",
        "dataVersion": "2",
        "data": {
            "experimentId": "bench",
            "experimentName": "bench",
            "runId": name,
            "runType": "azureml.scriptrun",
            "runTags": {TAG: "bench"},
            "runProperties": {},
            "runStatus": status.lower(),
        },
    }


def event_schedule(jobs: list[ScriptedJob], start: float, seed: int) -> list[Delivery]:
    """Every status change of every job as an Event Grid event, when it is delivered."""
    rng = random.Random(seed * 15485863 + 11)
    deliveries: list[Delivery] = []
    for job in jobs:
        failed = job.final_status == "Failed"
        for at, status in job.timeline[1:]:
            lost = LOST_FAILED_SHARE if failed and status == "Failed" else LOST_SHARE
            if rng.random() < lost:
                continue
            event_id = rng.getrandbits(128)
            deliveries.append((start + at + rng.uniform(*EVENT_DELAY), job.name, status, event_id))
    deliveries.sort(key=lambda delivery: delivery[0])
    return deliveries


class EventClock(VirtualClock):
    """A :class:`VirtualClock` that delivers scheduled events as time passes them."""

    def __init__(self) -> None:
        super().__init__()
        self._deliveries: deque[Delivery] = deque()
        self._deliver: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None
        self._delivery_lock: asyncio.Lock | None = None
        self.delivered = 0

    def schedule(
        self,
        deliveries: list[Delivery],
        deliver: Callable[[list[dict[str, Any]]], Awaitable[None]],
    ) -> None:
        self._deliveries = deque(deliveries)
        self._deliver = deliver
        self._delivery_lock = asyncio.Lock()

    def stop_delivering(self) -> None:
        self._deliver = None

    def _next_by(self, target: float) -> bool:
        return (
            self._deliver is not None
            and bool(self._deliveries)
            and (self._deliveries[0][0] <= target)
        )

    async def sleep(self, seconds: float) -> None:
        now = self.now()
        target = now + max(0.0, seconds)
        if seconds > 0:
            # As VirtualClock does: a positive sleep must move time on even when it is
            # below the epoch's float resolution (~2.4e-7 s). Without this a throttle
            # asking for 1e-9 s slept 0 s and asked again, for ever.
            target = max(target, math.nextafter(now, math.inf))
        while self._next_by(target):
            assert self._delivery_lock is not None and self._deliver is not None
            async with self._delivery_lock:
                if not self._next_by(target):
                    break
                await super().sleep(max(0.0, self._deliveries[0][0] - self.now()))
                batch = []
                while self._deliveries and self._deliveries[0][0] <= self.now():
                    batch.append(event_of(self._deliveries.popleft()))
                self.delivered += len(batch)
                # Shielded: the sleeper may be woken (and cancelled) by this very delivery.
                await asyncio.shield(asyncio.ensure_future(self._deliver(batch)))
        remaining = target - self.now()
        await super().sleep(remaining if remaining > 0 else 0.0)


class _Finished:
    """A :class:`~amlwait.service.hooks.WaitHook` keeping the result the task completes with."""

    result: WaitResult | None = None

    def on_wait_finished(self, record: WaitFinished) -> None:
        if record.result is not None:
            self.result = record.result


async def service(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> dict[str, tuple[float, str]]:
    """``amlwait serve`` with its defaults, one wait for the batch, events delivered."""
    if not isinstance(clock, EventClock):
        raise TypeError("the service strategy runs on the virtual clock only")
    harness_started = time.thread_time()
    deliveries = event_schedule(jobs, clock.now(), seed)
    harness_cpu = time.thread_time() - harness_started
    devops = FakeDevOps().start()
    folder = tempfile.TemporaryDirectory()
    store = open_store(
        f"sqlite:///{Path(folder.name) / 'bench.db'}", secret_key="bench-secret-passphrase"
    )
    listener, client = _loopback()
    async with ArmJobSource(
        endpoint=endpoint,
        credential=StaticToken("bench"),
        clock=clock,
        retry=RetryPolicy(rng=random.Random(seed)),
        transport=network,
    ) as source:
        devops_client = DevOpsClient([devops.org_url])
        finished = _Finished()
        watcher = Watcher(
            store, source, devops_client, settings=SETTINGS, clock=clock, hooks=[finished]
        )
        app = create_app(
            store,
            allowed_orgs=[devops.org_url],
            service_key=SERVICE_KEY,
            eventgrid_key=EVENTGRID_KEY,
            watcher=watcher,
            clock=clock,
        )
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        )
        serving = asyncio.ensure_future(server.serve(sockets=[listener]))
        watching = asyncio.ensure_future(watcher.run())

        sender = _Sender(str(client.base_url))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            await _run_wait(
                client, sender, clock, deliveries, finished, watching, devops, len(jobs)
            )
        finally:
            await client.aclose()  # before the server stops: it waits for open connections
            sender.close()
            watcher.stop()
            server.should_exit = True
            await asyncio.gather(watching, serving, return_exceptions=True)
            await devops_client.aclose()
            store.close()
            harness_cpu += sender.cpu + thread_cpu(getattr(devops._server, "_thread", None))
            devops.stop()
            folder.cleanup()
    result = finished.result
    assert result is not None
    service_counts["events_delivered"] = clock.delivered
    service_counts["events_scheduled"] = len(deliveries)
    service_counts["status_changes"] = status_changes(jobs)
    service_counts["harness_cpu_s"] = round(harness_cpu, 3)
    return {
        job.name: (job.finished_at, job.status or "")
        for job in result.jobs
        if job.finished_at is not None and job.finished
    }


# Extra numbers the child adds to the service's result row.
service_counts: dict[str, float] = {}


def status_changes(jobs: list[ScriptedJob]) -> int:
    """How many times the scenario's jobs change status (every entry after NotStarted):
    what Event Grid would announce if it lost nothing; the unit of "CPU per 1,000 status
    changes", the same for the virtual clock and the real-clock soak (bench/soak.py)."""
    return sum(len(job.timeline) - 1 for job in jobs)


class _Sender:
    """Event Grid's side of a delivery: a blocking client in a thread of its own, so its CPU
    is not counted as the service's (the service's event loop answers meanwhile). The
    delivery is still awaited before virtual time moves on: same events, same order."""

    def __init__(self, url: str) -> None:
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        self.client = httpx.Client(
            base_url=url, timeout=30, transport=httpx.HTTPTransport(socket_options=nodelay)
        )
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventgrid")
        self.cpu = 0.0  # CPU seconds of the sender's thread in ``post``

    def post(self, events: list[dict[str, Any]]) -> None:
        started = time.thread_time()
        try:
            answer = self.client.post(
                "/v1/events/eventgrid", params={"key": EVENTGRID_KEY}, json=events
            )
            answer.raise_for_status()
        finally:
            self.cpu += time.thread_time() - started

    async def deliver(self, events: list[dict[str, Any]]) -> None:
        await asyncio.get_running_loop().run_in_executor(self.pool, self.post, events)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()


def _loopback() -> tuple[socket.socket, httpx.AsyncClient]:
    """The service's listening socket on a loopback port, and a client for it."""
    listener = socket.socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    # Event Grid's deliveries: without TCP_NODELAY each POST's body would wait for a
    # delayed ACK (Nagle), 40 ms of real time per event on loopback.
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    transport = httpx.AsyncHTTPTransport(socket_options=nodelay)
    return listener, httpx.AsyncClient(base_url=url, timeout=30, transport=transport)


async def _run_wait(
    client: httpx.AsyncClient,
    sender: _Sender,
    clock: EventClock,
    deliveries: list[Delivery],
    finished: _Finished,
    watching: asyncio.Future[None],
    devops: FakeDevOps,
    expected_jobs: int,
) -> None:
    """Create the wait, deliver the events until it ends, check its one TaskCompleted."""
    clock.schedule(deliveries, sender.deliver)
    headers = _callback_headers(devops.org_url)
    answer = await client.post("/v1/waits", content=_body(expected_jobs), headers=headers)
    if answer.status_code != 202:
        raise RuntimeError(f"the service refused the wait: {answer.text}")
    while finished.result is None:
        await asyncio.sleep(0.05)
        if watching.done():
            watching.result()
            raise RuntimeError("the watcher stopped before the wait ended")
    clock.stop_delivering()
    # The task is completed by the outbox, in real time.
    loop = asyncio.get_running_loop()
    give_up = loop.time() + CALLBACK_WAIT
    while not devops.accepted_completions() and loop.time() < give_up:
        await asyncio.sleep(0.05)
    completions = devops.accepted_completions()
    if not completions:
        raise RuntimeError("the service never completed the task")
    succeeded = finished.result.outcome is BatchOutcome.SUCCEEDED
    expected = "succeeded" if succeeded else "failed"
    if completions[0].json["result"] != expected:
        raise RuntimeError(f"TaskCompleted said {completions[0].json['result']}")


def _callback_headers(org_url: str) -> dict[str, str]:
    """What InvokeRESTAPI@1 sends (``amlwait render service``'s headers, filled in)."""
    return callback_headers(
        org_url,
        service_key=SERVICE_KEY,
        auth_token="devops-token-bench",
        ProjectId="project-bench",
        JobId="job-bench",
        TimelineId="timeline-bench",
        TaskInstanceId="task-bench",
    )


def _body(expected: int) -> str:
    return wait_body(TAG, expected, timeout="24h", workspace_ref=WS)
