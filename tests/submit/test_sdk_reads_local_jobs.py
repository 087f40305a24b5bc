"""azure-ai-ml, unmodified, as the judge of what ``amlwait submit`` leaves in the local workspace.

The SDK is pointed at the local workspace by ``AZUREML_DEV_URL_MFE`` (its developer
override of the ARM endpoint). ``jobs.get`` works over plain http; the code operations
refuse a bearer token without TLS, so those tests serve https with a self-signed
certificate that ``REQUESTS_CA_BUNDLE`` makes the SDK (requests) and ``SSL_CERT_FILE``
makes amlwait (httpx) trust.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from amlwait.core.jobs import JobRef
from amlwait.submit.command import build_batch
from amlwait.submit.template import JobTemplate
from amlwait.workspace import LocalWorkspace
from tests.helpers import WS
from tests.submit.helpers import Project, make_project, run_submit, write
from tests.submit.test_code_upload import JOB_WITH_CODE, NAMES, code_requests, wait_until_terminal

pytest.importorskip(
    "azure.ai.ml",
    reason="azure-ai-ml is not installed (pip install -e '.[test]' or amlwait[azure])",
)

from azure.ai.ml import MLClient
from azure.core.credentials import AccessToken

from amlwait.submit.azure_sdk import AzureMLSubmitSource, sdk_command_job
from amlwait.submit.submitter import Outcome, Submitter

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class LocalCredential:
    """Any token: the local workspace accepts every bearer token unless given one."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("local-token", 4_102_444_800)


def ml_client(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", endpoint)
    # MLClient writes AZUREML_CURRENT_CLOUD into os.environ; let monkeypatch take it back,
    # or every later local job would inherit it.
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureCloud")
    return MLClient(LocalCredential(), WS.subscription, WS.resource_group, WS.workspace)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = make_project(tmp_path / "repo", job=JOB_WITH_CODE)
    write(project.root / "src" / "train.py", "import sys\nprint('trained', *sys.argv[1:])\n")
    return project


@pytest.fixture
def tls_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalWorkspace]:
    from tests.workspace.test_server import _self_signed

    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with LocalWorkspace(tmp_path / "ws", tls_cert=cert, tls_key=key) as local:
        yield local


def test_the_sdk_reads_every_job_amlwait_submit_created(
    tmp_path: Path,
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before code assets: ValidationException "arm_id cannot be resolved: str expected
    # but got Code", from the file:// codeId.
    with LocalWorkspace(tmp_path / "ws") as workspace:
        assert run_submit(capsys, *project.args(workspace.endpoint)).code == 0
        client = ml_client(workspace.endpoint, monkeypatch)

        jobs = {name: client.jobs.get(name) for name in NAMES}

    for name, job in jobs.items():
        assert job.name == name
        assert job.code.startswith(f"{WS.arm_path}/codes/")
        assert job.code.endswith("/versions/1")
        assert job.tags["plant"] == name.split("_")[0]


def test_the_sdk_reuses_the_code_amlwait_registered_without_uploading(
    tls_workspace: LocalWorkspace,
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.ai.ml.entities._assets import Code

    assert run_submit(capsys, *project.args(tls_workspace.endpoint)).code == 0
    ours = tls_workspace.store.get_job(JobRef(WS, NAMES[0]))
    assert ours is not None
    before = len(code_requests(tls_workspace))
    client = ml_client(tls_workspace.endpoint, monkeypatch)

    theirs = client._code.create_or_update(Code(path=str(project.root / "src")))

    assert theirs.id == ours.properties["codeId"]
    # The SDK's hash lookup (CodeVersions_List ?hash=) finds ours, then reads it.
    calls = [(r.method, r.query.get("hash") is not None) for r in code_requests(tls_workspace)]
    assert calls[before:] == [("GET", True), ("GET", False)]


def test_the_sdk_uploads_a_new_folder_through_the_pending_upload_it_is_given(
    tls_workspace: LocalWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.ai.ml.entities._assets import Code

    folder = write(tmp_path / "fresh" / "train.py", "print('fresh')\n").parent
    client = ml_client(tls_workspace.endpoint, monkeypatch)

    code = client._code.create_or_update(Code(path=str(folder)))

    assert code.path.startswith(tls_workspace.endpoint + "/amlwaitblobs/code-")
    paths = [(r.method, r.path.rsplit("/", 1)[-1]) for r in code_requests(tls_workspace)]
    assert paths[:2] == [("GET", "versions"), ("POST", "startPendingUpload")]
    assert ("PUT", "train.py") in paths  # the blob, on this same server
    assert paths[-1] == ("PUT", "1")  # CodeVersions_CreateOrUpdate
    # A job naming that version runs the uploaded file.
    from tests.workspace.helpers import arm_client, put_job

    with arm_client(tls_workspace.endpoint) as arm:
        put = put_job(
            arm, "SDK_CODE_JOB", "python3 train.py", codeId=code.id, environmentId="azureml:e:1"
        )
        assert put.status_code == 201, put.text
    assert wait_until_terminal(tls_workspace, "SDK_CODE_JOB") == "Completed"
    log = tls_workspace.read_log(JobRef(WS, "SDK_CODE_JOB"))
    assert log is not None and "fresh" in log


def test_submit_via_azure_ai_ml_runs_the_batch_in_the_local_workspace(
    tls_workspace: LocalWorkspace, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = build_batch(project.circuits, project.job, workspace=WS, run_date=date(2025, 11, 1))
    template = JobTemplate.load(project.job)
    jobs = {job.base_name: sdk_command_job(template, batch, job) for job in batch.jobs}
    source = AzureMLSubmitSource(ml_client(tls_workspace.endpoint, monkeypatch), jobs)

    results = asyncio.run(Submitter(source).submit(batch))

    assert [r.outcome for r in results] == [Outcome.SUBMITTED] * 3, [r.message for r in results]
    for name in NAMES:
        assert wait_until_terminal(tls_workspace, name) == "Completed"
    pending = [r for r in code_requests(tls_workspace) if r.path.endswith("startPendingUpload")]
    assert len(pending) == 1  # the SDK found its own upload again for circuits 2 and 3
