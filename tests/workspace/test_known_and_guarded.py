"""The local workspace knows its workspaces (ARM's 404s for the others, and ``amlwait wait``
turns them into one line and exit 2 at once), checks Host, refuses non-JSON bodies and
requires its token."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from amlwait.core.jobs import WorkspaceRef
from amlwait.workspace import LocalWorkspace, ScriptedWorkspace
from tests.helpers import FAST, amlwait, manifest
from tests.workspace.helpers import API_VERSION, ENVIRONMENT_ID, arm_client, get, job_path

SERVED = WorkspaceRef("00000000-0000-0000-0000-0000000000a1", "rg-1", "ws-1")
TYPO = WorkspaceRef("00000000-0000-0000-0000-0000000000a1", "rg-1", "ws-typo")
WRONG_GROUP = WorkspaceRef("00000000-0000-0000-0000-0000000000a1", "rg-typo", "ws-1")


def test_unknown_workspace_and_group_answer_arms_404s_distinct_from_a_missing_job(
    tmp_path: Path,
) -> None:
    with (
        LocalWorkspace(tmp_path, workspaces=["rg-1/ws-1"]) as local,
        arm_client(local.endpoint) as client,
    ):
        missing_job = get(client, job_path("absent", SERVED))
        missing_ws_job = get(client, job_path("absent", TYPO))
        missing_ws = get(client, TYPO.arm_path)
        missing_group = get(client, job_path("absent", WRONG_GROUP))
        listed = get(client, TYPO.arm_path + "/jobs")
        served = get(client, SERVED.arm_path.upper().replace("SUBSCRIPTIONS", "subscriptions"))

    assert missing_job.status_code == 404
    assert missing_job.json()["error"]["code"] == "NotFound"
    assert missing_ws_job.json()["error"]["code"] == "ParentResourceNotFound"
    assert "workspaces/ws-typo" in missing_ws_job.json()["error"]["message"]
    assert "serves: rg-1/ws-1" in missing_ws_job.json()["error"]["message"]
    assert missing_ws.json()["error"]["code"] == "ResourceNotFound"
    assert missing_group.json()["error"]["code"] == "ResourceGroupNotFound"
    assert listed.status_code == 404
    assert served.status_code == 200  # names compare case-insensitively, as in ARM


@pytest.mark.parametrize(
    ("workspace", "named"),
    [(TYPO, "workspace 'ws-typo'"), (WRONG_GROUP, "resource group 'rg-typo'")],
)
def test_wait_with_a_wrong_workspace_exits_2_in_seconds_naming_it(
    tmp_path: Path, workspace: WorkspaceRef, named: str
) -> None:
    with LocalWorkspace(tmp_path / "ws", workspaces=[SERVED]) as local:
        started = time.monotonic()
        result = amlwait(
            "wait",
            manifest(tmp_path, {"jobs": ["train_1", "train_2"]}),
            "-g",
            workspace.resource_group,
            "-w",
            workspace.workspace,
            *FAST,
            endpoint=local.endpoint,
            env={"AMLWAIT_ACCESS_TOKEN": "any"},
        )
        took = time.monotonic() - started

    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "--workspace-name" in lines[0]
    assert took < 5.0


def _raw_request(endpoint: str, request: bytes) -> bytes:
    url = httpx.URL(endpoint)
    with socket.create_connection((url.host, url.port or 80), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while len(answer) < 1_000_000:  # the server closes (Connection: close)
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_foreign_host_header_is_refused_as_dns_rebinding(tmp_path: Path) -> None:
    with LocalWorkspace(tmp_path) as local:
        path = f"{job_path('absent')}?api-version={API_VERSION}"
        foreign = _raw_request(
            local.endpoint,
            f"GET {path} HTTP/1.1\r\nHost: attacker.example:8765\r\n"
            "Authorization: Bearer t\r\nConnection: close\r\n\r\n".encode(),
        )
        spoofed = _raw_request(
            local.endpoint,
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1.attacker.example\r\n"
            "Authorization: Bearer t\r\nConnection: close\r\n\r\n".encode(),
        )
        with arm_client(local.endpoint.replace("127.0.0.1", "localhost")) as client:
            by_name = get(client, job_path("absent"))

    assert foreign.startswith(b"HTTP/1.1 400") and b"InvalidHostHeader" in foreign
    assert spoofed.startswith(b"HTTP/1.1 400")
    assert by_name.status_code == 404  # localhost is ours


def test_a_text_plain_body_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    body = json.dumps(
        {
            "properties": {
                "jobType": "Command",
                "environmentId": ENVIRONMENT_ID,
                "command": f"touch {marker}",
            }
        }
    )
    with LocalWorkspace(tmp_path / "ws") as local, arm_client(local.endpoint) as client:
        refused = client.put(
            job_path("job_plain"),
            params={"api-version": API_VERSION},
            content=body,
            headers={"Content-Type": "text/plain"},
        )
        form = client.put(
            job_path("job_form"),
            params={"api-version": API_VERSION},
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        absent = get(client, job_path("job_plain"))

    assert refused.status_code == 415
    assert refused.json()["error"]["code"] == "UnsupportedMediaType"
    assert form.status_code == 415
    assert absent.status_code == 404
    assert not marker.exists()


def test_a_configured_token_is_required_and_discovery_is_public() -> None:
    with ScriptedWorkspace(token="s3cret-token") as scripted:
        with arm_client(scripted.endpoint, token="wrong") as client:
            wrong = get(client, job_path("absent"))
            unknown_path = client.get("/nothing/here")
            discovery = client.get("/discovery")
        with arm_client(scripted.endpoint, token=None) as client:
            bare = get(client, job_path("absent"))

    assert wrong.status_code == 401
    assert bare.status_code == 401
    assert unknown_path.status_code == 401  # no route is revealed without the token
    assert discovery.status_code == 200
