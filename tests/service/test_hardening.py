"""The service against hostile input and a misbehaving far side (issue 10): the real app
on loopback HTTP, a real SQLite store, and small fakes of ARM and Azure DevOps."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amlwait.service.app import create_app
from amlwait.service.secrets import generate_secret
from amlwait.service.store import Store, open_store
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
