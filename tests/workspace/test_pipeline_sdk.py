"""azure-ai-ml, unmodified, reads and cancels a pipeline job of the local workspace:
``jobs.get`` (a PipelineJob with its nodes), ``jobs.list(parent_job_name=…)`` (the steps,
through run history's ``…/children``), ``jobs.get`` of a step (whose ARM body is null,
so the SDK reads it from run history, as on Azure), and ``jobs.begin_cancel`` reaching
every step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amlwait.workspace import LocalWorkspace
from tests.helpers import WS
from tests.workspace.helpers import arm_client, wait_for_status

pytest.importorskip(
    "azure.ai.ml",
    reason="azure-ai-ml is not installed (pip install -e '.[test]' or amlwait[azure])",
)

from azure.ai.ml import MLClient
from azure.core.credentials import AccessToken

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

V = {"api-version": "2025-12-01"}
TERMINAL = {"Completed", "Failed", "Canceled"}


class LocalCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("local-token", 4_102_444_800)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalWorkspace]:
    """Served over TLS: the SDK sends its token to run history only over https."""
    from tests.workspace.test_server import _self_signed

    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with LocalWorkspace(
        tmp_path / "ws", max_concurrent=3, cancel_retry_after=1, tls_cert=cert, tls_key=key
    ) as ws:
        yield ws


@pytest.fixture
def sdk(workspace: LocalWorkspace, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", workspace.endpoint)
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureCloud")
    return MLClient(LocalCredential(), WS.subscription, WS.resource_group, WS.workspace)


def submit_pipeline(client: httpx.Client, name: str, command: str, nodes: list[str]) -> None:
    component = f"{WS.arm_path}/components/train/versions/1"
    spec = {"type": "command", "command": command, "environment": "azureml:env:1"}
    client.put(component, params=V, json={"properties": {"componentSpec": spec}})
    jobs = {
        n: {"type": "command", "componentId": component, "display_name": n.upper()} for n in nodes
    }
    body = {
        "properties": {
            "jobType": "Pipeline",
            "tags": {"amlwait.batch": name},
            "jobs": jobs,
            "settings": {"continue_on_step_failure": True},
        }
    }
    created = client.put(f"{WS.arm_path}/jobs/{name}", params=V, json=body)
    assert created.status_code == 201, created.text


def test_the_sdk_reads_a_pipeline_job_and_lists_its_steps(
    workspace: LocalWorkspace, sdk: Any
) -> None:
    with arm_client(workspace.endpoint) as client:
        submit_pipeline(client, "TRAINING_SDK", "echo ok", ["a", "b"])
        wait_for_status(client, "TRAINING_SDK", TERMINAL, timeout=20)

    job = sdk.jobs.get("TRAINING_SDK")
    steps = list(sdk.jobs.list(parent_job_name="TRAINING_SDK"))
    listed = [j.name for j in sdk.jobs.list()]
    step = sdk.jobs.get(steps[0].name)  # ARM answers properties null: read from run history

    assert job.type == "pipeline"
    assert job.status == "Completed"
    assert set(job.jobs) == {"a", "b"}
    assert job.tags == {"amlwait.batch": "TRAINING_SDK"}
    assert sorted(s.display_name for s in steps) == ["A", "B"]
    assert {s.status for s in steps} == {"Completed"}
    assert listed == ["TRAINING_SDK"]
    assert (step.name, step.status) == (steps[0].name, "Completed")


def test_the_sdks_cancel_of_a_pipeline_reaches_its_steps(
    workspace: LocalWorkspace, sdk: Any
) -> None:
    with arm_client(workspace.endpoint) as client:
        submit_pipeline(client, "TRAINING_CANCEL", "sleep 30", ["a", "b"])
        wait_for_status(client, "TRAINING_CANCEL", {"Running"}, timeout=10)

        sdk.jobs.begin_cancel("TRAINING_CANCEL").result(timeout=30)
        final = wait_for_status(client, "TRAINING_CANCEL", TERMINAL, timeout=20)

    steps = list(sdk.jobs.list(parent_job_name="TRAINING_CANCEL"))
    assert final == "Canceled"
    assert [s.status for s in steps] == ["Canceled", "Canceled"]
