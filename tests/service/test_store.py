"""The store's promises, each proved on SQLite and on PostgreSQL with two "replicas"."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from amlwait.errors import InputError
from amlwait.service.secrets import SECRET_ENV, SecretKeyError, TokenCipher, generate_secret
from amlwait.service.store import Store, StoreUnavailableError, WaitRecord, open_store

from .conftest import STORE_SECRET

T0 = 1_700_000_000.0
LEASE = 30.0
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOi.secret-devops-token"
Replicas = Callable[[], Store]


def callback(task: str = "task-1") -> dict[str, str]:
    return {
        "PlanUrl": "https://dev.azure.com/org/",
        "ProjectId": "project",
        "HubName": "build",
        "PlanId": "plan",
        "JobId": "job",
        "TimelineId": "timeline",
        "TaskInstanceId": task,
    }


def new_wait(
    store: Store, task: str = "task-1", *, deadline: float = T0 + 3600, token: str = TOKEN
) -> WaitRecord:
    record, created = store.create_wait(
        plan_key=f"plan/job/{task}",
        request={"jobs": [f"job-{task}"], "timeout": "1h"},
        callback=callback(task),
        auth_token=token,
        deadline=deadline,
        now=T0,
    )
    assert created
    return record


def raw_rows(store_url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows read straight from the database, past the store."""
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url[len("sqlite:///") :]) as connection:
            return connection.execute(query).fetchall()
    import psycopg

    with psycopg.connect(store_url) as connection:
        return connection.execute(query).fetchall()


def finish(store: Store, wait_id: str, owner: str, *, now: float = T0 + 1) -> bool:
    return store.finish_wait(
        wait_id,
        owner,
        outcome="succeeded",
        result={"jobs": {"a": "Completed"}},
        final=[("log", {"text": "all done"}), ("completed", {"result": "succeeded"})],
        now=now,
    )


# -- creating waits and keeping the token secret ----------------------------------------------


def test_create_wait_is_idempotent_on_the_plan_key(store: Store) -> None:
    first = new_wait(store)
    again, created = store.create_wait(
        plan_key="plan/job/task-1",
        request={"jobs": ["something-else"]},
        callback=callback(),
        auth_token="another-token",
        deadline=T0 + 10,
        now=T0 + 5,
    )
    assert not created
    assert again == first
    assert store.get_wait(first.wait_id) == first
    assert store.auth_token(first.wait_id) == TOKEN
    assert first.state == "waiting" and first.lease_owner is None and first.outcome is None
    assert first.request == {"jobs": ["job-task-1"], "timeout": "1h"}
    assert first.callback == callback()


def test_unknown_wait_has_no_record_and_no_token(store: Store) -> None:
    assert store.get_wait("0" * 32) is None
    assert store.auth_token("0" * 32) is None


def test_the_token_is_never_stored_in_clear(store: Store, store_url: str) -> None:
    record = new_wait(store)
    [(sealed,)] = raw_rows(store_url, "SELECT auth_token FROM waits")
    assert TOKEN.encode() not in bytes(sealed)
    everything = repr(raw_rows(store_url, "SELECT * FROM waits"))
    everything += repr(raw_rows(store_url, "SELECT * FROM store_meta"))
    assert TOKEN not in everything
    assert "AuthToken" not in everything
    assert store.auth_token(record.wait_id) == TOKEN


@pytest.mark.parametrize(
    ("request_doc", "callback_doc"),
    [
        ({"jobs": ["a"], "note": TOKEN}, callback()),
        ({"jobs": ["a"]}, {**callback(), "AuthToken": "x"}),
    ],
    ids=["token-in-request", "authtoken-in-callback"],
)
def test_create_wait_refuses_to_store_the_token_in_clear(
    store: Store, request_doc: dict[str, Any], callback_doc: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="AuthToken"):
        store.create_wait(
            plan_key="plan/job/task",
            request=request_doc,
            callback=callback_doc,
            auth_token=TOKEN,
            deadline=T0 + 60,
            now=T0,
        )
    assert store.metrics()["active_waits"] == 0


def test_a_store_opened_with_another_secret_is_refused(store: Store, store_url: str) -> None:
    new_wait(store)
    with pytest.raises(InputError, match=SECRET_ENV):
        open_store(store_url, secret_key=generate_secret())


def test_a_store_needs_a_secret(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(InputError, match=f"set {SECRET_ENV}"):
        open_store(store_url, secret_key=None)
    monkeypatch.setenv(SECRET_ENV, STORE_SECRET)
    open_store(store_url, secret_key=None).close()


def test_a_passphrase_is_stretched_into_a_key_and_tokens_are_bound_to_their_wait() -> None:
    cipher = TokenCipher.from_secret("correct horse battery staple")
    sealed = cipher.seal(TOKEN, context="wait-1")
    assert TOKEN.encode() not in sealed
    assert cipher.seal(TOKEN, context="wait-1") != sealed  # a fresh nonce every time
    assert TokenCipher.from_secret("correct horse battery staple").open(sealed, context="wait-1")
    with pytest.raises(SecretKeyError):
        cipher.open(sealed, context="wait-2")
    with pytest.raises(SecretKeyError):
        TokenCipher.from_secret("another passphrase").open(sealed, context="wait-1")
    assert "key" in repr(cipher) and "redacted" in repr(cipher)


# -- leases -----------------------------------------------------------------------------------


def test_a_wait_is_leased_to_one_replica_and_taken_over_when_its_lease_ends(
    open_replica: Replicas,
) -> None:
    a, b = open_replica(), open_replica()
    wait = new_wait(a)

    [claimed] = a.claim_waits("a", now=T0, lease_seconds=LEASE)
    assert (claimed.wait_id, claimed.lease_owner, claimed.lease_until) == (
        wait.wait_id,
        "a",
        T0 + LEASE,
    )
    assert b.claim_waits("b", now=T0 + 1, lease_seconds=LEASE) == []
    assert a.renew_leases("a", [wait.wait_id], now=T0 + 20, lease_seconds=LEASE) == [wait.wait_id]
    assert b.claim_waits("b", now=T0 + 49, lease_seconds=LEASE) == []  # renewed until T0 + 50

    [taken] = b.claim_waits("b", now=T0 + 50, lease_seconds=LEASE)  # a died: no renewal
    assert taken.lease_owner == "b"
    assert a.renew_leases("a", [wait.wait_id], now=T0 + 51, lease_seconds=LEASE) == []
    assert not a.save_progress(wait.wait_id, "a", {"late": True}, now=T0 + 51)
    assert not finish(a, wait.wait_id, "a", now=T0 + 51)
    assert b.save_progress(wait.wait_id, "b", {"jobs": {"a": "Running"}}, now=T0 + 52)
    record = a.get_wait(wait.wait_id)
    assert record is not None and record.result == {"jobs": {"a": "Running"}}
    assert record.lease_owner == "b" and record.state == "waiting"


def test_claim_waits_extends_the_owners_lease_respects_the_limit_and_takes_deadlines_first(
    store: Store,
) -> None:
    late = new_wait(store, "late", deadline=T0 + 900)
    soon = new_wait(store, "soon", deadline=T0 + 100)
    [first] = store.claim_waits("a", now=T0, lease_seconds=LEASE, limit=1)
    assert first.wait_id == soon.wait_id
    again = store.claim_waits("a", now=T0 + 5, lease_seconds=LEASE)
    assert [r.wait_id for r in again] == [soon.wait_id, late.wait_id]
    assert {r.lease_until for r in again} == {T0 + 5 + LEASE}


def test_claim_waits_skips_the_waits_its_owner_follows_without_counting_them_in_the_limit(
    store: Store,
) -> None:
    """A replica that follows ``limit`` waits with earlier deadlines still claims a new one
    (it used to get its own waits back, so a wait past the first ``limit`` starved), and the
    followed waits are not written again (their lease stays as it was)."""
    followed = [new_wait(store, f"held-{n}", deadline=T0 + 100 + n) for n in range(3)]
    assert len(store.claim_waits("a", now=T0, lease_seconds=LEASE)) == 3
    fresh = new_wait(store, "fresh", deadline=T0 + 900)
    skip = {w.wait_id for w in followed}
    [claimed] = store.claim_waits("a", now=T0 + 5, lease_seconds=LEASE, limit=3, skip=skip)
    assert claimed.wait_id == fresh.wait_id and claimed.lease_until == T0 + 5 + LEASE
    for wait in followed:
        record = store.get_wait(wait.wait_id)
        assert record is not None and record.lease_until == T0 + LEASE
    everything = skip | {fresh.wait_id}
    assert store.claim_waits("a", now=T0 + 6, lease_seconds=LEASE, skip=everything) == []


def test_get_wait_without_its_result_reads_everything_else(store: Store) -> None:
    wait = new_wait(store)
    assert len(store.claim_waits("a", now=T0, lease_seconds=LEASE)) == 1
    progress = {"jobs": ["job-1"], "states": [{"name": "job-1", "status": "Running"}]}
    assert store.save_progress(wait.wait_id, "a", progress, now=T0 + 1)
    full = store.get_wait(wait.wait_id)
    light = store.get_wait(wait.wait_id, with_result=False)
    assert full is not None and light is not None
    assert full.result == progress and light.result is None
    assert light == replace(full, result=None)
    assert store.get_wait("no-such-wait", with_result=False) is None


def test_an_expired_lease_nobody_took_is_still_renewable_by_its_owner(store: Store) -> None:
    wait = new_wait(store)
    store.claim_waits("a", now=T0, lease_seconds=LEASE)
    assert store.renew_leases("a", [wait.wait_id], now=T0 + 99, lease_seconds=LEASE) == [
        wait.wait_id
    ]
    assert store.renew_leases("b", [wait.wait_id], now=T0 + 99, lease_seconds=LEASE) == []


def test_concurrent_claims_get_disjoint_waits(open_replica: Replicas) -> None:
    replicas = [open_replica(), open_replica()]
    for number in range(120):
        new_wait(replicas[0], f"task-{number}")
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(4)

    def claim_until_none_left(store: Store, thread: str) -> None:
        start.wait()
        for round_ in itertools.count():
            owner = f"{thread}-{round_}"  # a new owner each round: an owner re-claims its own
            records = store.claim_waits(owner, now=T0, lease_seconds=LEASE, limit=7)
            if not records:
                return
            claimed[owner] = [record.wait_id for record in records]

    threads = [
        threading.Thread(target=claim_until_none_left, args=(replicas[n % 2], f"owner-{n}"))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every_claim = [wait_id for ids in claimed.values() for wait_id in ids]
    assert len(every_claim) == len(set(every_claim)) == 120
    for owner, ids in claimed.items():
        for wait_id in ids:
            record = replicas[1].get_wait(wait_id)
            assert record is not None and record.lease_owner == owner


# -- finishing --------------------------------------------------------------------------------


def test_finish_wait_happens_only_by_the_lease_holder_and_only_once(
    open_replica: Replicas,
) -> None:
    a, b = open_replica(), open_replica()
    wait = new_wait(a)
    a.claim_waits("a", now=T0, lease_seconds=LEASE)
    assert not finish(b, wait.wait_id, "b")
    assert finish(a, wait.wait_id, "a")
    assert not finish(a, wait.wait_id, "a")
    record = b.get_wait(wait.wait_id)
    assert record is not None
    assert (record.state, record.outcome, record.result) == (
        "completing",
        "succeeded",
        {"jobs": {"a": "Completed"}},
    )
    assert b.claim_waits("b", now=T0 + 999, lease_seconds=LEASE) == []
    assert a.renew_leases("a", [wait.wait_id], now=T0 + 2, lease_seconds=LEASE) == []
    assert not a.save_progress(wait.wait_id, "a", {}, now=T0 + 2)
    assert a.metrics()["completing_waits"] == 1


def test_a_lease_that_ran_out_cannot_finish(store: Store) -> None:
    wait = new_wait(store)
    store.claim_waits("a", now=T0, lease_seconds=LEASE)
    assert not finish(store, wait.wait_id, "a", now=T0 + LEASE)


# -- the outbox -------------------------------------------------------------------------------


def test_outbox_items_of_a_wait_go_out_in_order(store: Store) -> None:
    first, other = new_wait(store, "first"), new_wait(store, "other")
    store.claim_waits("a", now=T0, lease_seconds=LEASE)
    store.enqueue(first.wait_id, "feed", {"lines": ["1"]}, now=T0)
    store.enqueue(other.wait_id, "feed", {"lines": ["other"]}, now=T0)
    store.enqueue(first.wait_id, "feed", {"lines": ["2"]}, now=T0)
    assert finish(store, first.wait_id, "a")
    store.enqueue(first.wait_id, "feed", {"lines": ["too late"]}, now=T0 + 2)  # ignored

    sent: list[tuple[str, dict[str, Any]]] = []
    now = T0 + 2
    while items := store.claim_outbox("a", now=now, lease_seconds=LEASE):
        heads = {item.wait_id for item in items}
        assert len(heads) == len(items)  # never two items of one wait at once
        for item in items:
            if item.wait_id == first.wait_id:
                sent.append((item.kind, item.payload))
            store.delivered(item.item_id, "a", now=now)
        now += 1
    assert sent == [
        ("feed", {"lines": ["1"]}),
        ("feed", {"lines": ["2"]}),
        ("log", {"text": "all done"}),
        ("completed", {"result": "succeeded"}),
    ]


def test_a_claimed_item_is_exclusive_until_its_claim_runs_out(open_replica: Replicas) -> None:
    a, b = open_replica(), open_replica()
    wait = new_wait(a)
    a.claim_waits("a", now=T0, lease_seconds=LEASE)
    a.enqueue(wait.wait_id, "feed", {"lines": ["x"]}, now=T0)
    [item] = a.claim_outbox("a", now=T0, lease_seconds=LEASE)
    assert b.claim_outbox("b", now=T0 + LEASE - 1, lease_seconds=LEASE) == []
    [again] = b.claim_outbox("b", now=T0 + LEASE, lease_seconds=LEASE)  # a died mid-send
    assert again.item_id == item.item_id
    a.retry_later(item.item_id, "a", next_attempt_at=T0 + LEASE, error="late")  # not a's now
    assert a.claim_outbox("a", now=T0 + LEASE + 1, lease_seconds=LEASE) == []
    assert a.metrics()["outbox_retrying"] == 0


def test_concurrent_outbox_claims_are_disjoint(open_replica: Replicas) -> None:
    replicas = [open_replica(), open_replica()]
    for number in range(60):
        wait = new_wait(replicas[0], f"task-{number}")
        replicas[0].enqueue(wait.wait_id, "feed", {"lines": [str(number)]}, now=T0)
    claimed: list[int] = []
    start = threading.Barrier(4)

    def claim_until_none_left(store: Store, owner: str) -> None:
        start.wait()
        while items := store.claim_outbox(owner, now=T0, lease_seconds=LEASE, limit=3):
            claimed.extend(item.item_id for item in items)

    threads = [
        threading.Thread(target=claim_until_none_left, args=(replicas[n % 2], f"owner-{n}"))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == len(set(claimed)) == 60


def test_retry_later_holds_the_item_and_its_successors_until_it_is_due(store: Store) -> None:
    wait = new_wait(store)
    store.claim_waits("a", now=T0, lease_seconds=LEASE)
    store.enqueue(wait.wait_id, "feed", {"lines": ["1"]}, now=T0)
    store.enqueue(wait.wait_id, "feed", {"lines": ["2"]}, now=T0)
    [item] = store.claim_outbox("a", now=T0, lease_seconds=LEASE)
    store.retry_later(item.item_id, "a", next_attempt_at=T0 + 10, error="HTTP 503")
    assert store.claim_outbox("a", now=T0 + 9, lease_seconds=LEASE) == []
    assert store.metrics()["outbox_retrying"] == 1
    [retried] = store.claim_outbox("a", now=T0 + 10, lease_seconds=LEASE)
    assert (retried.item_id, retried.attempts) == (item.item_id, 1)
    store.drop(retried.item_id, "a", error="gave up")
    [second] = store.claim_outbox("a", now=T0 + 10, lease_seconds=LEASE)
    assert second.payload == {"lines": ["2"]}
    assert store.metrics()["outbox_dropped"] == 1


def test_delivering_completed_ends_the_wait_and_deletes_the_token(
    store: Store, store_url: str
) -> None:
    wait = new_wait(store)
    store.claim_waits("a", now=T0, lease_seconds=LEASE)
    assert finish(store, wait.wait_id, "a")
    [log] = store.claim_outbox("a", now=T0 + 2, lease_seconds=LEASE)
    store.delivered(log.item_id, "a", now=T0 + 2)
    assert store.auth_token(wait.wait_id) == TOKEN  # still needed for TaskCompleted
    [completed] = store.claim_outbox("a", now=T0 + 3, lease_seconds=LEASE)
    assert completed.kind == "completed"
    store.delivered(completed.item_id, "a", now=T0 + 3)
    store.delivered(completed.item_id, "a", now=T0 + 4)  # a second report changes nothing

    record = store.get_wait(wait.wait_id)
    assert record is not None and record.state == "done" and record.outcome == "succeeded"
    assert store.auth_token(wait.wait_id) is None
    assert raw_rows(store_url, "SELECT auth_token FROM waits") == [(None,)]
    assert store.claim_outbox("a", now=T0 + 999, lease_seconds=LEASE) == []


def test_dropping_completed_ends_the_wait_without_a_token(store: Store) -> None:
    wait = new_wait(store)
    store.claim_waits("a", now=T0, lease_seconds=LEASE)
    store.finish_wait(
        wait.wait_id,
        "a",
        outcome="failed",
        result={},
        final=[("completed", {"result": "failed"})],
        now=T0 + 1,
    )
    [completed] = store.claim_outbox("a", now=T0 + 1, lease_seconds=LEASE)
    store.drop(completed.item_id, "someone-else", error="not my claim")  # ignored
    assert store.auth_token(wait.wait_id) == TOKEN
    store.drop(completed.item_id, "a", error="the plan no longer exists")
    record = store.get_wait(wait.wait_id)
    assert record is not None and record.state == "done"
    assert store.auth_token(wait.wait_id) is None


def test_unknown_outbox_kinds_are_refused(store: Store) -> None:
    wait = new_wait(store)
    with pytest.raises(ValueError, match="unknown outbox kind"):
        store.enqueue(wait.wait_id, "email", {}, now=T0)


# -- restarts, metrics, housekeeping ----------------------------------------------------------


def test_a_restart_keeps_waits_leases_tokens_and_the_outbox(
    open_replica: Replicas,
) -> None:
    before = open_replica()
    finished, waiting = new_wait(before, "finished"), new_wait(before, "waiting")
    before.claim_waits("a", now=T0, lease_seconds=LEASE)
    before.save_progress(waiting.wait_id, "a", {"jobs": {"x": "Running"}}, now=T0)
    assert finish(before, finished.wait_id, "a")
    before.close()

    after = open_replica()  # "a" restarted (same owner id)
    assert after.auth_token(waiting.wait_id) == TOKEN
    assert after.claim_waits("b", now=T0 + 1, lease_seconds=LEASE) == []
    [resumed] = after.claim_waits("a", now=T0 + 1, lease_seconds=LEASE)
    assert resumed.wait_id == waiting.wait_id
    assert resumed.result == {"jobs": {"x": "Running"}}
    kinds = [item.kind for item in after.claim_outbox("a", now=T0 + 1, lease_seconds=LEASE)]
    assert kinds == ["log"]
    assert after.metrics()["outbox_pending"] == 2


def test_metrics_count_waits_by_state_and_the_outbox(store: Store) -> None:
    assert store.metrics() == {
        "active_waits": 0,
        "completing_waits": 0,
        "done_waits": 0,
        "outbox_pending": 0,
        "outbox_retrying": 0,
        "outbox_delivered": 0,
        "outbox_dropped": 0,
    }
    waits = [new_wait(store, f"task-{n}") for n in range(3)]
    store.claim_waits("a", now=T0, lease_seconds=LEASE)
    store.enqueue(waits[0].wait_id, "feed", {"lines": ["x"]}, now=T0)
    finish(store, waits[1].wait_id, "a")
    metrics = store.metrics()
    assert (metrics["active_waits"], metrics["completing_waits"]) == (2, 1)
    assert metrics["outbox_pending"] == 3


def test_purge_finished_forgets_old_done_waits(store: Store) -> None:
    old, running = new_wait(store, "old"), new_wait(store, "running")
    store.claim_waits("a", now=T0, lease_seconds=LEASE)
    store.finish_wait(
        old.wait_id, "a", outcome="succeeded", result={}, final=[("completed", {})], now=T0
    )
    [item] = store.claim_outbox("a", now=T0, lease_seconds=LEASE)
    store.delivered(item.item_id, "a", now=T0 + 5)
    purge = store.purge_finished  # type: ignore[attr-defined]
    assert purge(before=T0 + 5) == 0
    assert purge(before=T0 + 6) == 1
    assert store.get_wait(old.wait_id) is None
    assert store.get_wait(running.wait_id) is not None
    assert store.metrics()["outbox_delivered"] == 0


# -- opening ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/waits", "unsupported store URL"),
        ("waits.db", "unsupported store URL"),
        ("sqlite:/waits.db", "three slashes"),
        ("sqlite:////nonexistent-directory/sub/waits.db", "cannot open the store"),
        ("postgresql://postgres:hunter2@127.0.0.1:1/test", "cannot reach the store"),
    ],
)
def test_a_bad_store_url_is_one_line_of_input_error(url: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        open_store(url, secret_key=STORE_SECRET)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert "hunter2" not in text


def test_a_file_that_is_not_a_database_is_an_input_error(tmp_path: Any) -> None:
    path = tmp_path / "waits.db"
    path.write_text("not a database, just text " * 100)
    with pytest.raises(InputError, match="cannot open the store"):
        open_store(f"sqlite:///{path}", secret_key=STORE_SECRET)


def test_an_in_memory_store_works(tmp_path: Any) -> None:
    store = open_store("sqlite:///:memory:", secret_key=STORE_SECRET)
    try:
        record = new_wait(store)
        assert store.auth_token(record.wait_id) == TOKEN
    finally:
        store.close()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_lost_postgresql_connection_fails_one_call_and_is_replaced(store_url: str) -> None:
    import psycopg

    name = f"amlwait_test_{uuid.uuid4().hex[:12]}"
    store = open_store(f"{store_url}&application_name={name}", secret_key=STORE_SECRET)
    try:
        wait = new_wait(store)
        with psycopg.connect(store_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            )
        with pytest.raises(StoreUnavailableError):
            store.get_wait(wait.wait_id)
        assert store.auth_token(wait.wait_id) == TOKEN
    finally:
        store.close()
