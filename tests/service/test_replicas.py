"""Two service replicas on one PostgreSQL database: each wait is completed exactly once,
and a replica killed mid-wait has its waits taken over by the other."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlwait.service.testing import FakeDevOps
from amlwait.workspace import ScriptedWorkspace
from tests.service.conftest import POSTGRES_URL, _postgres_unavailable, _with_search_path
from tests.service.test_service import (
    Service,
    body,
    callback_headers,
    completions_for,
    devops,  # noqa: F401 - fixture
    eventually,
    feed_text,
    tagged,
    workspace,  # noqa: F401 - fixture
)


@pytest.fixture
def postgres_store() -> Iterator[str]:
    problem = _postgres_unavailable()
    if problem:
        pytest.skip(problem)
    import psycopg

    schema = f"amlwait_replicas_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_search_path(POSTGRES_URL, schema)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_two_replicas_complete_every_wait_once_and_survive_one_being_killed(
    tmp_path: Path,
    devops: FakeDevOps,  # noqa: F811
    workspace: ScriptedWorkspace,  # noqa: F811
    postgres_store: str,
) -> None:
    first = Service(
        tmp_path / "unused-a.db", devops, workspace.endpoint, ["--store", postgres_store]
    ).start()
    replicas = [first]
    try:
        plans = []
        for index in range(6):
            tag = f"amlwait-batch-replica{index}"
            # Running until the first replica is dead: it cannot finish a wait before then.
            tagged(workspace, tag, {f"REPLICA{index}_JOB": [(0, "Running")]})
            headers = callback_headers(devops.org_url)
            plans.append(headers["PlanId"])
            answer = first.post_wait(body(tag, 1), headers)
            assert answer.status_code == 202, answer.text
        # The first replica owns every wait (its progress is in each task's feed) ...
        for plan in plans:
            eventually(lambda plan=plan: feed_text(devops, plan), what=f"feed of {plan}")
        second = Service(
            tmp_path / "unused-b.db", devops, workspace.endpoint, ["--store", postgres_store]
        ).start()
        replicas.append(second)
        # ... and dies holding their leases: the second must take them over.
        first.kill()
        for index in range(6):
            tag = f"amlwait-batch-replica{index}"
            tagged(workspace, tag, {f"REPLICA{index}_JOB": [(0, "Running"), (1.0, "Completed")]})
        for plan in plans:
            eventually(
                lambda plan=plan: completions_for(devops, plan),
                timeout=30,
                what=f"TaskCompleted for {plan}",
            )
        assert all(len(completions_for(devops, plan)) == 1 for plan in plans)
        assert all(c.json["result"] == "succeeded" for c in devops.accepted_completions())
        assert len(devops.accepted_completions()) == 6
        assert all("resumes this wait" in feed_text(devops, plan) for plan in plans)
        assert second.store_metrics().get("amlwait_store_active_waits", 0) == 0
    finally:
        for replica in replicas:
            replica.stop()
