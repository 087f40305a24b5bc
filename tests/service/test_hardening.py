"""The service against hostile input and a misbehaving far side (issue 10): the real app
on loopback HTTP, a real SQLite store, and small fakes of ARM and Azure DevOps."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amlwait.azureml.arm import ArmJobSource
from amlwait.azureml.credentials import StaticToken
from amlwait.core.policy import PollPolicy
from amlwait.core.retry import RetryPolicy
from amlwait.service.app import create_app
from amlwait.service.devops_client import DevOpsClient
from amlwait.service.secrets import generate_secret
from amlwait.service.store import Store, open_store
from amlwait.service.testing import FakeDevOps
from amlwait.service.watcher import Watcher, WatcherSettings
from amlwait.workspace.server import ServerThread

KEY = "hardening-service-key-0123456789"
TOKEN = "devops-token-Hardening-42"
ORG = "https://dev.azure.com/contoso/"
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000a1"


def headers(**over: str) -> dict[str, str]:
    values = {
        "PlanUrl": ORG,
        "ProjectId": "project-1",
        "HubName": "build",
        "PlanId": uuid.uuid4().hex,
        "JobId": "job-1",
        "TimelineId": "timeline-1",
        "TaskInstanceId": "task-1",
        "AuthToken": TOKEN,
        "X-Amlwait-Key": KEY,
        "Content-Type": "application/json",
    }
    values.update(over)
    return values


def request_body(**over: Any) -> str:
    document: dict[str, Any] = {
        "subscription": SUBSCRIPTION,
        "resourceGroup": "rg-1",
        "workspace": "ws-1",
        "tag": "amlwait-batch-1",
        "expectedJobs": 1,
    }
    document.update(over)
    return json.dumps(document)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'waits.db'}", secret_key=generate_secret())
    yield opened
    opened.close()


@pytest.fixture
def serve_app(store: Store) -> Iterator[Callable[..., str]]:
    """Serves ``create_app(store, …)`` on loopback; returns its base URL."""
    servers: list[ServerThread] = []

    def serve(**options: Any) -> str:
        options.setdefault("allowed_orgs", [ORG])
        options.setdefault("service_key", KEY)
        server = ServerThread(create_app(store, **options))
        server.start()
        servers.append(server)
        return server.endpoint

    yield serve
    for server in servers:
        server.stop()


def stored_waits(store: Store) -> float:
    return sum(v for k, v in store.metrics().items() if k.endswith("_waits"))


# -- item 9: every ARM path segment follows Azure's naming rule --------------------------------


@pytest.mark.parametrize(
    "field",
    [
        {"subscription": ".."},
        {"subscription": "sub-1"},
        {"subscription": SUBSCRIPTION + "\n"},
        {"resourceGroup": ".."},
        {"resourceGroup": "rg."},
        {"workspace": ".."},
        {"workspace": "WS\n"},
        {"workspace": "../../../../x?y=1#"},
        {"jobs": ["j0\n"]},
    ],
)
def test_a_name_azure_would_not_accept_is_refused_with_400_and_nothing_stored(
    serve_app: Callable[..., str], store: Store, field: dict[str, Any]
) -> None:
    url = serve_app()
    answer = httpx.post(f"{url}/v1/waits", content=request_body(**field), headers=headers())
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    assert "\n" not in message
    assert "is not valid" in message or "is not a valid job name" in message
    assert stored_waits(store) == 0


def test_names_azure_accepts_are_stored(serve_app: Callable[..., str], store: Store) -> None:
    url = serve_app()
    body = request_body(resourceGroup="rg_(prod).eu-1", workspace="w_1-x", jobs=["j0"])
    answer = httpx.post(f"{url}/v1/waits", content=body, headers=headers())
    assert answer.status_code == 202, answer.text
    assert stored_waits(store) == 1


# -- item 10: a PlanUrl is normalised before it is compared ----------------------------------


@pytest.mark.parametrize(
    "plan_url",
    [
        "https://dev.azure.com/contoso/../evil/",
        "https://dev.azure.com/contoso/%2e%2e/evil/",
        "https://dev.azure.com/contoso/%2E%2E/evil/",
        "https://dev.azure.com/contoso/.%2e/evil/",
        "https://dev.azure.com/contoso/./../evil/",
        "https://dev.azure.com/contoso/x/../../evil/",
        "https://dev.azure.com/contoso/%2e%2e%2fevil/",
        "https://dev.azure.com/contoso/..%5cevil/",
        "https://dev.azure.com/contoso\\..\\evil/",
        "https://dev.azure.com/contoso/%252e%252e/evil/",
    ],
)
def test_a_plan_url_that_climbs_out_of_the_allowed_organization_is_refused(
    serve_app: Callable[..., str], store: Store, plan_url: str
) -> None:
    url = serve_app()
    answer = httpx.post(
        f"{url}/v1/waits", content=request_body(), headers=headers(PlanUrl=plan_url)
    )
    assert answer.status_code == 403, answer.text
    assert stored_waits(store) == 0


def test_a_plan_url_with_harmless_dot_segments_is_stored_normalised(
    serve_app: Callable[..., str], store: Store
) -> None:
    url = serve_app()
    plan_url = "https://dev.azure.com/contoso/./project/../"
    answer = httpx.post(
        f"{url}/v1/waits", content=request_body(), headers=headers(PlanUrl=plan_url)
    )
    assert answer.status_code == 202, answer.text
    record = store.get_wait(answer.json()["waitId"])
    assert record is not None and record.callback["PlanUrl"] == ORG


# -- item 11: bodies are bounded in size and depth -------------------------------------------


def test_deep_nesting_in_a_wait_is_a_400_not_a_500(serve_app: Callable[..., str]) -> None:
    url = serve_app()
    for deep in ("[" * 990 + "]" * 990, '{"tag":' + "[" * 900 + "]" * 900 + "}"):
        answer = httpx.post(f"{url}/v1/waits", content=deep, headers=headers())
        assert answer.status_code == 400, answer.text
        assert "nest" in answer.json()["error"]


EVENTGRID_KEY = "eventgrid-key-0123456789"


def test_event_grid_bodies_are_bounded_in_size_and_depth_and_odd_data_is_ignored(
    serve_app: Callable[..., str],
) -> None:
    url = serve_app(eventgrid_key=EVENTGRID_KEY)
    endpoint = f"{url}/v1/events/eventgrid?key={EVENTGRID_KEY}"
    huge = b"[" + b" " * (4 * 1024 * 1024) + b"]"
    answer = httpx.post(endpoint, content=huge)
    assert answer.status_code == 413, answer.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield b"["
        for _ in range(64):
            yield b" " * 65536
        yield b"]"

    answer = httpx.post(endpoint, content=chunks())
    assert answer.status_code == 413, answer.text
    answer = httpx.post(endpoint, content="[" * 5000 + "]" * 5000)
    assert answer.status_code == 400 and "nest" in answer.json()["error"]
    validation = {"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": "x"}
    answer = httpx.post(endpoint, json=[validation])
    assert answer.status_code == 400, answer.text
    run_event = {"eventType": "Microsoft.MachineLearningServices.RunCompleted", "data": "x"}
    answer = httpx.post(endpoint, json=[run_event])
    assert answer.status_code == 200 and answer.json()["events"] == 0


# -- item 1: whatever a read raises, a wait ends and calls back ------------------------------


class BrokenArm:
    """A loopback ARM that answers every request ``200`` with a body that is not JSON (the
    first mode the probe found); ``requests`` counts what it was sent."""

    def __init__(self) -> None:
        self.requests = 0
        self.server = ServerThread(
            Starlette(routes=[Route("/{path:path}", self._answer, methods=["GET", "POST"])])
        )

    async def _answer(self, request: Request) -> Response:
        self.requests += 1
        return Response('{"value": [ {"name": ', media_type="application/json")

    def __enter__(self) -> BrokenArm:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


FAST_SETTINGS = WatcherSettings(
    policy=PollPolicy(poll_interval=0.05, max_poll_interval=0.1, not_found_grace=30.0),
    lease_seconds=30.0,
    claim_interval=0.05,
    progress_interval=0.05,
    outbox_interval=0.05,
    outbox_retry=RetryPolicy(initial=0.05, maximum=0.2, jitter=0.0),
)


def store_wait(store: Store, org_url: str, *, deadline_in: float, **request: Any) -> str:
    now = time.time()
    document = json.loads(request_body(**request))
    callback = {name: value for name, value in headers(PlanUrl=org_url).items()}
    record, _ = store.create_wait(
        plan_key=uuid.uuid4().hex,
        request=document,
        callback={k: callback[k] for k in ("PlanUrl", "ProjectId", "HubName", "PlanId",
                                           "JobId", "TimelineId", "TaskInstanceId")},
        auth_token=TOKEN,
        deadline=now + deadline_in,
        now=now,
    )  # fmt: skip
    return record.wait_id


def run_watcher(
    store: Store,
    arm_endpoint: str,
    devops: FakeDevOps,
    settings: WatcherSettings,
    done: Callable[[], bool],
    limit: float,
) -> float:
    """Runs a watcher (real ArmJobSource and DevOpsClient) until ``done()`` or ``limit``
    seconds; returns the seconds it took."""

    async def main() -> float:
        source = ArmJobSource(
            endpoint=arm_endpoint,
            credential=StaticToken("arm-token-for-the-broken-arm"),
            retry=RetryPolicy(initial=0.01, maximum=0.05, jitter=0.0),
        )
        client = DevOpsClient([devops.org_url], timeout=5.0)
        watcher = Watcher(store, source, client, settings=settings)
        running = asyncio.ensure_future(watcher.run())
        start = time.monotonic()
        try:
            while not done() and time.monotonic() - start < limit:
                await asyncio.sleep(0.05)
            return time.monotonic() - start
        finally:
            watcher.stop()
            await running
            await source.aclose()
            await client.aclose()

    return asyncio.run(main())  # fmt: skip


def completions(devops: FakeDevOps) -> list[str]:
    return [str(call.json["result"]) for call in devops.accepted_completions()]


def feed(devops: FakeDevOps) -> list[str]:
    lines: list[str] = []
    for call in devops.snapshot():
        if call.path.endswith("/feed"):
            lines.extend(call.json["value"])
    return lines


@pytest.fixture
def devops() -> Iterator[FakeDevOps]:
    fake = FakeDevOps().start()
    yield fake
    fake.stop()


def test_malformed_answers_from_arm_end_both_kinds_of_wait_as_failed_with_the_reason(
    store: Store, devops: FakeDevOps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="amlwait.service")
    with BrokenArm() as arm:
        listed = store_wait(store, devops.org_url, deadline_in=4)
        named = store_wait(store, devops.org_url, deadline_in=4, jobs=["j0"])
        took = run_watcher(
            store, arm.server.endpoint, devops, FAST_SETTINGS,
            done=lambda: len(completions(devops)) == 2, limit=30,
        )  # fmt: skip
    assert completions(devops) == ["failed", "failed"], f"no callback after {took:.1f} s"
    for wait_id in (listed, named):
        record = store.get_wait(wait_id)
        assert record is not None and record.state != "waiting"
        assert record.result is not None
        # The ARM client retries a malformed answer until the deadline (a bad answer is
        # transient); the wait then ends failed at its deadline, saying what it retried.
        assert record.result["reason"].startswith("deadline reached")
        assert "Azure ML could not be read" in record.result["reason"]
    lines = feed(devops)
    # What was retried is said (the very last attempt may instead meet a connection the
    # server's keep-alive closed: a ReadError, retried like the rest).
    assert any("not ARM's JSON" in line for line in lines), lines
    failures = [line for line in lines if "Azure ML could not be read" in line]
    # At most arm_error_limit lines per wait, however often the client retried underneath.
    assert 1 <= len(failures) <= 2 * FAST_SETTINGS.arm_error_limit, lines
    # Bounded log volume: one line per failed read, no tracebacks, no "resumes later" loop.
    assert len(caplog.records) <= 2 * FAST_SETTINGS.arm_error_limit
    assert not any("resumes later" in r.getMessage() for r in caplog.records)


def test_the_deadline_ends_a_wait_whose_reads_keep_failing(
    store: Store, devops: FakeDevOps
) -> None:
    patient = WatcherSettings(**{**FAST_SETTINGS.__dict__, "arm_error_limit": 1_000_000})
    with BrokenArm() as arm:
        wait_id = store_wait(store, devops.org_url, deadline_in=1.5, jobs=["j0"])
        took = run_watcher(
            store, arm.server.endpoint, devops, patient,
            done=lambda: bool(completions(devops)), limit=30,
        )  # fmt: skip
    assert completions(devops) == ["failed"], f"no callback after {took:.1f} s"
    assert took < 10
    record = store.get_wait(wait_id)
    assert record is not None and record.result is not None
    assert record.result["reason"].startswith("deadline reached")
    assert "Azure ML could not be read" in record.result["reason"]
    assert any("deadline reached" in line for line in feed(devops))


def test_a_stored_wait_with_a_name_azure_refuses_fails_without_a_request(
    store: Store, devops: FakeDevOps
) -> None:
    """As a wait stored before names were checked at the door: "WS\\n" raised
    httpx.InvalidURL on every read, forever."""
    with BrokenArm() as arm:
        wait_id = store_wait(store, devops.org_url, deadline_in=600, workspace="WS\n")
        run_watcher(
            store, arm.server.endpoint, devops, FAST_SETTINGS,
            done=lambda: bool(completions(devops)), limit=30,
        )  # fmt: skip
        assert arm.requests == 0
    assert completions(devops) == ["failed"]
    record = store.get_wait(wait_id)
    assert record is not None and record.result is not None
    assert "the workspace 'WS\\n' is not valid" in record.result["reason"]


# -- item 6: a token echoed by a server goes nowhere ------------------------------------------

ARM_TOKEN = "arm-token-Echoed-7f3c9a"


class EchoingArm(BrokenArm):
    """A loopback ARM that refuses every request (400) with an error message that quotes
    the request's Authorization header, as some proxies and gateways do."""

    async def _answer(self, request: Request) -> Response:
        self.requests += 1
        echoed = request.headers.get("authorization", "")
        body = {"error": {"code": "BadRequest", "message": f"bad header Authorization: {echoed}"}}
        return Response(json.dumps(body), status_code=400, media_type="application/json")


def test_an_arm_error_echoing_the_token_reaches_no_feed_log_or_stored_reason(
    store: Store, devops: FakeDevOps, caplog: pytest.LogCaptureFixture
) -> None:
    from amlwait.redact import REDACTOR
    from amlwait.service.secrets import RegisteredToken

    caplog.set_level(logging.DEBUG, logger="amlwait.service")

    async def main(arm_endpoint: str) -> None:
        source = ArmJobSource(
            endpoint=arm_endpoint,
            credential=RegisteredToken(StaticToken(ARM_TOKEN)),
            retry=RetryPolicy(initial=0.01, maximum=0.05, jitter=0.0),
        )
        client = DevOpsClient([devops.org_url], timeout=5.0)
        watcher = Watcher(store, source, client, settings=FAST_SETTINGS)
        running = asyncio.ensure_future(watcher.run())
        start = time.monotonic()
        try:
            while not completions(devops) and time.monotonic() - start < 30:
                await asyncio.sleep(0.05)
        finally:
            watcher.stop()
            await running
            await source.aclose()
            await client.aclose()

    try:
        with EchoingArm() as arm:
            wait_id = store_wait(store, devops.org_url, deadline_in=600, jobs=["j0"])
            asyncio.run(main(arm.server.endpoint))
            assert arm.requests > 0
        assert completions(devops) == ["failed"]
        record = store.get_wait(wait_id)
        assert record is not None and record.result is not None
        everything = "\n".join(
            [
                *feed(devops),
                json.dumps(record.result),
                *(r.getMessage() for r in caplog.records),
                *(call.body.decode("utf-8", "replace") for call in devops.snapshot()),
            ]
        )
        assert "bad header Authorization: Bearer ***" in everything
        assert ARM_TOKEN not in everything
    finally:
        REDACTOR.forget(ARM_TOKEN)


def test_an_auth_token_with_a_non_ascii_or_control_character_is_refused(
    serve_app: Callable[..., str], store: Store
) -> None:
    url = serve_app()
    for token in ("devops-tokén-123456", "devops-token\x7f123456"):
        raw = {**headers(), "AuthToken": token}
        answer = httpx.post(
            f"{url}/v1/waits",
            content=request_body(),
            headers=[(k.encode(), v.encode("latin-1")) for k, v in raw.items()],
        )
        assert answer.status_code == 400, answer.text
        assert token not in answer.text
    assert stored_waits(store) == 0


# -- item 12: a wait that ends while its lease is renewed is no lost lease -------------------


def test_a_wait_finishing_during_renew_leases_does_not_abort_the_claim_round(
    store: Store, devops: FakeDevOps, caplog: pytest.LogCaptureFixture
) -> None:
    """The race of a two-replica burst, made certain: while ``renew_leases`` runs (in its
    thread), the followed wait finishes and its follow is gone. Before, the round raised
    KeyError (no new wait claimed) and logged a false "lost the lease"."""
    caplog.set_level(logging.WARNING, logger="amlwait.service")

    class FinishingDuringRenewal:
        """The real store; ``renew_leases`` lets the wait finish before it answers."""

        def __init__(self, inner: Store) -> None:
            self.inner = inner
            self.watcher: Watcher | None = None
            self.loop: asyncio.AbstractEventLoop | None = None

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def renew_leases(self, owner: str, wait_ids: list[str], **kwargs: Any) -> list[str]:
            assert self.watcher is not None and self.loop is not None
            for wait_id in wait_ids:  # the follow finished and was dropped meanwhile
                record = self.inner.get_wait(wait_id)
                assert record is not None
                self.inner.finish_wait(
                    wait_id, owner, outcome="succeeded", result={}, final=[], now=time.time()
                )
                self.loop.call_soon_threadsafe(self.watcher._follows.pop, wait_id, None)
            time.sleep(0.1)  # the pops run on the loop before the renewal answers
            return list(self.inner.renew_leases(owner, wait_ids, **kwargs))

    async def main() -> None:
        wrapped = FinishingDuringRenewal(store)
        source = ArmJobSource(endpoint="http://127.0.0.1:9", credential=StaticToken("t" * 8))
        client = DevOpsClient([devops.org_url])
        watcher = Watcher(wrapped, source, client, settings=FAST_SETTINGS)  # type: ignore[arg-type]
        wrapped.watcher, wrapped.loop = watcher, asyncio.get_running_loop()
        first = store_wait(store, devops.org_url, deadline_in=600, jobs=["j0"])
        await watcher._claim_round()  # follows the first wait
        assert first in watcher._follows
        second = store_wait(store, devops.org_url, deadline_in=600, jobs=["j1"])
        await watcher._claim_round()  # renews (the first ends meanwhile), then claims
        assert second in watcher._follows, "the claim round was aborted"
        for follow in list(watcher._follows.values()):
            follow.abandon()
        await asyncio.gather(
            *(f.task for f in watcher._follows.values() if f.task), return_exceptions=True
        )
        await source.aclose()
        await client.aclose()

    asyncio.run(main())
    assert not any("lost the lease" in r.getMessage() for r in caplog.records)


# -- item 14: health reflects the store; a store that lost waits says so ---------------------


def test_healthz_and_post_say_503_when_the_store_cannot_write(
    tmp_path: Path, serve_app: Callable[..., str], store: Store
) -> None:
    import shutil
    import subprocess

    if shutil.which("chattr") is None:
        pytest.skip("no chattr on PATH: cannot make the store's files unwritable as root")
    url = serve_app()
    assert httpx.get(f"{url}/healthz").text == "ok\n"
    # The database and its WAL; not the -shm file, which SQLite maps into memory (writing
    # to an immutable mapping is SIGBUS, not an error a store could report).
    files = [str(tmp_path / "waits.db"), *map(str, tmp_path.glob("waits.db-wal"))]
    made = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not possible here: {made.stderr.strip()}")
    try:
        health = httpx.get(f"{url}/healthz", timeout=10)
        assert health.status_code == 503, health.text
        assert health.text.startswith("unhealthy: the store")
        answer = httpx.post(f"{url}/v1/waits", content=request_body(), headers=headers())
        assert answer.status_code == 503
        assert "store is unavailable" in answer.json()["error"]
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)
    assert httpx.get(f"{url}/healthz").text == "ok\n"


def test_a_sqlite_store_rolled_back_refuses_to_open_and_says_how_many_waits_it_lost(
    tmp_path: Path,
) -> None:
    import shutil

    from amlwait.errors import InputError

    secret = generate_secret()
    path = tmp_path / "waits.db"
    first = open_store(f"sqlite:///{path}", secret_key=secret)
    store_wait(first, ORG, deadline_in=600)
    first.close()
    shutil.copy(path, tmp_path / "older.db")  # closed: the WAL is checkpointed into it
    again = open_store(f"sqlite:///{path}", secret_key=secret)
    for _ in range(33):
        store_wait(again, ORG, deadline_in=600)
    again.close()
    for leftover in tmp_path.glob("waits.db-*"):
        leftover.unlink()
    shutil.copy(tmp_path / "older.db", path)  # as a lost WAL leaves it: 1 wait of 34
    with pytest.raises(InputError) as refused:
        open_store(f"sqlite:///{path}", secret_key=secret)
    message = str(refused.value)
    assert "has lost waits" in message and "created 1" in message and "records 34" in message
    assert "\n" not in message
    (tmp_path / "waits.db.hwm").unlink()  # the operator accepts the loss
    open_store(f"sqlite:///{path}", secret_key=secret).close()


def test_metrics_type_totals_as_counters(
    serve_app: Callable[..., str], store: Store, devops: FakeDevOps
) -> None:
    source = ArmJobSource(endpoint="http://127.0.0.1:9", credential=StaticToken("t" * 8))
    watcher = Watcher(store, source, DevOpsClient([devops.org_url]), settings=FAST_SETTINGS)
    url = serve_app(watcher=watcher)
    text = httpx.get(f"{url}/metrics", headers={"X-Amlwait-Key": KEY}).text
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE"))
    totals = [name for name in types if name.endswith("_total")]
    assert "amlwait_arm_requests_total" in totals and "amlwait_http_requests_total" in totals
    assert all(types[name] == "counter" for name in totals), types
    assert types["amlwait_store_active_waits"] == "gauge"
    assert types["amlwait_waits_followed"] == "gauge"


# -- serve's start-up: secrets checked, loopback by address, trials without a secret ----------


def run_serve(tmp_path: Path, *args: str, **env: str) -> Any:
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "AMLWAIT"))}
    clean.update(env)
    command = [sys.executable, "-m", "amlwait.service", "--store", f"sqlite:///{tmp_path}/s.db"]
    return subprocess.run([*command, *args], env=clean, capture_output=True, text=True, timeout=60)


GOOD_SECRET = "a-passphrase-of-24-chars"


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"AMLWAIT_SERVICE_KEY": KEY + "\n", "AMLWAIT_SERVICE_SECRET": GOOD_SECRET},
         ["--allow-org", ORG], "AMLWAIT_SERVICE_KEY contains a control character"),
        ({"AMLWAIT_SERVICE_KEY": KEY, "AMLWAIT_SERVICE_SECRET": "sécret-passphrase-x"},
         ["--allow-org", ORG], "AMLWAIT_SERVICE_SECRET contains a non-ASCII character"),
        ({"AMLWAIT_SERVICE_KEY": KEY, "AMLWAIT_SERVICE_SECRET": "short"},
         ["--allow-org", ORG], "AMLWAIT_SERVICE_SECRET is too short (5 characters)"),
        ({}, ["--insecure-no-auth", "--host", "127.0.0.1.attacker.example", "--allow-org", ORG],
         "--insecure-no-auth only listens on a loopback address"),
        ({"AMLWAIT_SERVICE_KEY": KEY, "AMLWAIT_SERVICE_SECRET": GOOD_SECRET},
         ["--allow-org", "http://127.0.0.1.attacker.example/org/"], "not loopback"),
    ],
)  # fmt: skip
def test_serve_refuses_a_bad_secret_or_a_host_that_only_looks_like_loopback(
    tmp_path: Path, env: dict[str, str], args: list[str], expected: str
) -> None:
    done = run_serve(tmp_path, *args, **env)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr
    for value in env.values():
        assert value.strip() not in done.stderr or len(value) < 6


def test_insecure_no_auth_runs_a_trial_without_a_secret_and_says_so(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "AMLWAIT"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "amlwait.service", "--store", f"sqlite:///{tmp_path}/s.db",
         "--insecure-no-auth", "--port", "0", "--allow-org", ORG],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stderr is not None
        listening = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in listening, process.stderr.read()
        url = listening.split("listening on ", 1)[1].strip()
        assert httpx.get(f"{url}/healthz").text == "ok\n"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert "AMLWAIT_SERVICE_SECRET is not set: this trial run encrypts" in stderr


def test_devops_on_loopback_is_called_directly_whatever_http_proxy_says(
    devops: FakeDevOps, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxied: list[str] = []

    async def record(request: Request) -> Response:
        proxied.append(str(request.url))
        return Response(status_code=502)

    proxy = ServerThread(Starlette(routes=[Route("/{path:path}", record, methods=["POST"])]))
    proxy.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.endpoint)
        monkeypatch.setenv("HTTPS_PROXY", proxy.endpoint)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        from amlwait.service.models import Callback

        callback = Callback.from_document({**headers(PlanUrl=devops.org_url)})

        async def main() -> None:
            client = DevOpsClient([devops.org_url])
            try:
                await client.task_completed(callback, TOKEN, "succeeded")
            finally:
                await client.aclose()

        asyncio.run(main())
    finally:
        proxy.stop()
    assert proxied == []
    assert completions(devops) == ["succeeded"]
