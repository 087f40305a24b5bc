"""The waiting strategies, each reading the simulated workspace over real HTTP.

A strategy is ``async (endpoint, clock, network, jobs, seed) -> {job: (known_at, status)}``:
when it learnt that each job ended, and the status it saw.

The scripted loops retry a failed read the way azure-core does (the SDK and ``az`` are
built on it): 429/5xx and dropped connections, exponential backoff from 0.8 s, at most
120 s, honouring ``Retry-After``, 10 attempts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable

import httpx

from amlwait.azureml.arm import ArmJobSource
from amlwait.azureml.credentials import StaticToken
from amlwait.core.clock import Clock
from amlwait.core.jobs import JobRef
from amlwait.core.retry import RetryPolicy
from amlwait.readpath import mlflow_waiter
from amlwait.result import WaitResult
from amlwait.waiter import Waiter
from bench.scenario import TAG, ScriptedJob
from bench.sim import API_VERSION, WS

Known = dict[str, tuple[float, str]]
Strategy = Callable[
    [str, Clock, httpx.AsyncBaseTransport, list[ScriptedJob], int], Awaitable[Known]
]

# What the waiting loops take as "ended": azure-ai-ml's terminal set also holds
# NotResponding and Paused, so the SDK's own loop stops at a NotResponding that recovers.
ENDED = frozenset({"Completed", "Failed", "Canceled"})
SDK_ENDED = ENDED | {"NotResponding", "Paused"}


class _ScriptReader:
    """One ARM GET per call, retried like azure-core."""

    def __init__(self, endpoint: str, clock: Clock, network: httpx.AsyncBaseTransport) -> None:
        self.clock = clock
        self.client = httpx.AsyncClient(
            base_url=endpoint, transport=network, headers={"Authorization": "Bearer bench"}
        )

    async def status(self, name: str) -> str | None:
        for attempt in range(1, 11):
            retry_after = 0.0
            try:
                answer = await self.client.get(
                    f"{WS.arm_path}/jobs/{name}", params={"api-version": API_VERSION}
                )
            except httpx.TransportError:
                pass
            else:
                if answer.status_code == 200:
                    return str(answer.json()["properties"]["status"])
                if answer.status_code == 404:
                    return None
                retry_after = float(answer.headers.get("retry-after", 0))
            await self.clock.sleep(max(retry_after, min(120.0, 0.8 * 2 ** (attempt - 1))))
        raise RuntimeError(f"GET {name} kept failing (10 attempts)")

    async def aclose(self) -> None:
        await self.client.aclose()


async def naive_loop(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> Known:
    """Every 60 s, GET each unfinished job one after another."""
    reader = _ScriptReader(endpoint, clock, network)
    known: Known = {}
    pending = [job.name for job in jobs]
    try:
        while pending:
            for name in pending:
                status = await reader.status(name)
                if status in ENDED:
                    known[name] = (clock.now(), status)
            pending = [name for name in pending if name not in known]
            if pending:
                await clock.sleep(60)
    finally:
        await reader.aclose()
    return known


async def _one_after_another(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    interval: Callable[[float], float],
    ended: frozenset[str],
) -> Known:
    reader = _ScriptReader(endpoint, clock, network)
    known: Known = {}
    try:
        for job in jobs:
            began = clock.now()
            while True:
                status = await reader.status(job.name)
                if status in ended:
                    known[job.name] = (clock.now(), status)
                    break
                await clock.sleep(interval(clock.now() - began))
    finally:
        await reader.aclose()
    return known


def sdk_stream_interval(elapsed: float) -> float:
    """azure-ai-ml ``jobs.stream``'s cadence: ``max(2, 60 / (1 + 100 e^(-t/20)))``."""
    return max(2.0, 60.0 / (1.0 + 100.0 * math.exp(-elapsed / 20.0)))


async def sdk_stream(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> Known:
    """``ml_client.jobs.stream(job)`` for each job in turn (its cadence, over ARM GET)."""
    return await _one_after_another(endpoint, clock, network, jobs, sdk_stream_interval, SDK_ENDED)


async def template_loop(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> Known:
    """The mlops-templates shell loop (``az ml job show`` every 15 s), one job after another."""
    return await _one_after_another(endpoint, clock, network, jobs, lambda _: 15.0, ENDED)


async def _amlwait(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
    tag: str | None,
) -> Known:
    refs = [JobRef(WS, job.name) for job in jobs]
    async with _arm_source(endpoint, clock, network, seed) as source:
        result = await Waiter(refs, source, clock=clock, tag=tag).run()
    return _known(result)


def _arm_source(
    endpoint: str, clock: Clock, network: httpx.AsyncBaseTransport, seed: int
) -> ArmJobSource:
    """The ARM source every amlwait strategy reads through: the bench's network, its clock,
    and retry jitter seeded per run."""
    return ArmJobSource(
        endpoint=endpoint,
        credential=StaticToken("bench"),
        clock=clock,
        retry=RetryPolicy(rng=random.Random(seed)),
        transport=network,
    )


def _known(result: WaitResult) -> Known:
    """Each finished job's name → (when amlwait saw it end, its status)."""
    return {
        job.name: (job.finished_at, job.status or "")
        for job in result.jobs
        if job.finished_at is not None and job.finished
    }


async def amlwait_get(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> Known:
    """``amlwait wait`` defaults, manifest without a tag: concurrent GETs."""
    return await _amlwait(endpoint, clock, network, jobs, seed, None)


async def amlwait_list(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> Known:
    """``amlwait wait`` defaults, manifest with the batch tag: paged LIST."""
    return await _amlwait(endpoint, clock, network, jobs, seed, TAG)


async def _amlwait_mlflow(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
    tag: str | None,
) -> Known:
    refs = [JobRef(WS, job.name) for job in jobs]
    notes: list[str] = []
    async with _arm_source(endpoint, clock, network, seed) as source:
        waiter = mlflow_waiter(refs, source, mode="mlflow", note=notes.append, clock=clock, tag=tag)
        result = await waiter.run()
    if notes:
        raise RuntimeError(f"the MLflow read path fell back: {notes[0]}")
    return _known(result)


async def amlwait_mlflow_tag(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> Known:
    """``amlwait wait --read-path mlflow`` with the batch tag."""
    return await _amlwait_mlflow(endpoint, clock, network, jobs, seed, TAG)


async def amlwait_mlflow_notag(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> Known:
    """``amlwait wait --read-path mlflow`` without a tag (run-id searches)."""
    return await _amlwait_mlflow(endpoint, clock, network, jobs, seed, None)


async def baseline(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> Known:
    """No waiting at all: what the child and its simulator cost on their own."""
    return {}


async def service(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> Known:
    """``amlwait serve`` with Event Grid events (imported here: only its child loads it)."""
    from bench.service_strategy import service as serve

    return await serve(endpoint, clock, network, jobs, seed)


async def amlwait_pipeline(
    endpoint: str,
    clock: Clock,
    network: httpx.AsyncBaseTransport,
    jobs: list[ScriptedJob],
    seed: int,
) -> Known:
    """``submit --as-pipeline`` + ``wait`` + reports on one pipeline job whose steps are the
    jobs (imported here: only its child loads the submit code)."""
    from bench.pipeline_strategy import amlwait_pipeline as run_pipeline

    return await run_pipeline(endpoint, clock, network, jobs, seed)


STRATEGIES: dict[str, tuple[Strategy, str]] = {
    "naive-60s": (naive_loop, "(1) naive loop: every 60 s, GET each job serially"),
    "sdk-stream": (sdk_stream, "(2a) SDK jobs.stream cadence, one job after another"),
    "template-15s": (template_loop, "(2b) mlops-templates: az ml job show every 15 s, serially"),
    "amlwait-get": (amlwait_get, "(3) amlwait defaults, concurrent GETs (no batch tag)"),
    "amlwait-list": (amlwait_list, "(3) amlwait defaults, paged LIST by batch tag"),
    "amlwait-mlflow-tag": (
        amlwait_mlflow_tag,
        "(3m) amlwait --read-path mlflow, batch tag: one MLflow search a poll, ARM GET per end",
    ),
    "amlwait-mlflow-notag": (
        amlwait_mlflow_notag,
        "(3m) amlwait --read-path mlflow, no tag: run-id searches, ARM GET per end",
    ),
    "service": (service, "(4) amlwait serve, Event Grid events, polling as a safety net"),
    "amlwait-pipeline": (
        amlwait_pipeline,
        "(5) submit --as-pipeline + wait + reports: one pipeline job, its steps read at the end",
    ),
    "baseline": (baseline, "child process + simulator only (no strategy): RSS/CPU floor"),
}
# Strategies that hold no agent while they wait (an agentless server job calls them).
AGENTLESS = frozenset({"service"})
# Strategies whose jobs are the steps of a pipeline job they submit (bench.sim, pipeline).
PIPELINE = frozenset({"amlwait-pipeline"})
SKIPPED: dict[str, str] = {}
