"""The local workspace's code assets: code versions, pending uploads and the blob endpoint."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from amlwait.workspace import LocalWorkspace
from tests.workspace.helpers import API_VERSION, WS_PATH, arm_client, put_job, wait_until

VERSION = f"{WS_PATH}/codes/abc123/versions/1"
BLOB_HEADERS = {"x-ms-blob-type": "BlockBlob"}


def start_upload(client: httpx.Client, path: str = VERSION) -> dict[str, Any]:
    response = client.post(
        f"{path}/startPendingUpload",
        params={"api-version": API_VERSION},
        json={"pendingUploadType": "TemporaryBlobReference"},
    )
    assert response.status_code == 200, response.text
    reference: dict[str, Any] = response.json()["blobReferenceForConsumption"]
    return reference


def blob_url(sas_uri: str, blob: str) -> str:
    parts = urlsplit(sas_uri)
    return f"{parts.scheme}://{parts.netloc}{parts.path}/{blob}?{parts.query}"


def register(client: httpx.Client, code_uri: str, path: str = VERSION) -> httpx.Response:
    return client.put(
        path,
        params={"api-version": API_VERSION},
        json={"properties": {"codeUri": code_uri, "isAnonymous": True}},
    )


def upload_folder(client: httpx.Client, files: dict[str, str]) -> str:
    """Upload ``files`` under ``src/`` of a fresh container; the folder's codeUri."""
    reference = start_upload(client)
    for name, text in files.items():
        put = httpx.put(
            blob_url(reference["credential"]["sasUri"], f"src/{name}"),
            content=text.encode(),
            headers=BLOB_HEADERS,
        )
        assert put.status_code == 201, put.text
    return f"{reference['blobUri']}/src"


def test_a_pending_upload_answers_a_sas_on_this_same_server(
    local_workspace: LocalWorkspace, local_client: httpx.Client
) -> None:
    reference = start_upload(local_client)

    assert reference["credential"]["credentialType"] == "SAS"
    assert reference["blobUri"].startswith(local_workspace.endpoint + "/amlwaitblobs/code-")
    sas = urlsplit(reference["credential"]["sasUri"])
    assert sas.path == urlsplit(reference["blobUri"]).path
    assert "sig=" in sas.query


def test_a_registered_code_version_reads_back_in_the_spec_shape(
    local_client: httpx.Client,
) -> None:
    code_uri = upload_folder(local_client, {"train.py": "print(1)\n"})

    created = register(local_client, code_uri)
    again = register(local_client, code_uri)
    read = local_client.get(VERSION, params={"api-version": API_VERSION})

    assert (created.status_code, again.status_code, read.status_code) == (201, 200, 200)
    body = read.json()
    assert body["id"] == VERSION
    assert body["name"] == "1"
    assert body["type"] == "Microsoft.MachineLearningServices/workspaces/codes/versions"
    assert body["properties"]["codeUri"] == code_uri
    assert body["properties"]["isAnonymous"] is True
    assert body["properties"]["provisioningState"] == "Succeeded"
    assert {"createdAt", "lastModifiedAt", "lastModifiedByType"} <= body["systemData"].keys()


def test_a_job_naming_a_registered_version_runs_the_uploaded_files(
    local_client: httpx.Client,
) -> None:
    register(local_client, upload_folder(local_client, {"train.py": "print('from upload')\n"}))

    put = put_job(local_client, "CODE_ASSET_JOB", "python3 train.py", codeId=VERSION)

    assert put.status_code == 201, put.text
    assert put.json()["properties"]["codeId"] == VERSION

    def ended() -> str | None:
        job = local_client.get(
            f"{WS_PATH}/jobs/CODE_ASSET_JOB", params={"api-version": API_VERSION}
        )
        status = str(job.json()["properties"]["status"])
        return status if status in ("Completed", "Failed", "Canceled") else None

    status = wait_until(ended, timeout=20)
    assert status == "Completed"
    log = local_client.get(
        f"{WS_PATH}/jobs/CODE_ASSET_JOB/amlwaitLogs", params={"api-version": API_VERSION}
    )
    assert "from upload" in log.text


@pytest.mark.parametrize(
    ("code_uri", "expected"),
    [
        ("https://account.blob.core.windows.net/c/src", "is not a folder uploaded to this"),
        ("file:///tmp", "is not a folder uploaded to this"),
        (None, "is not a folder uploaded to this"),
    ],
)
def test_a_code_version_must_point_at_an_uploaded_folder(
    local_client: httpx.Client, code_uri: str | None, expected: str
) -> None:
    response = register(local_client, code_uri)  # type: ignore[arg-type]

    assert response.status_code == 400
    assert expected in response.json()["error"]["message"]


def test_a_version_cannot_change_its_code(local_client: httpx.Client) -> None:
    assert register(local_client, upload_folder(local_client, {"a.py": "1"})).status_code == 201

    changed = register(local_client, upload_folder(local_client, {"a.py": "2"}))

    assert changed.status_code == 400
    assert "cannot be changed" in changed.json()["error"]["message"]


def test_an_unknown_version_is_404_and_an_unknown_field_400(local_client: httpx.Client) -> None:
    missing = local_client.get(
        f"{WS_PATH}/codes/nope/versions/1", params={"api-version": API_VERSION}
    )
    extra = local_client.put(
        VERSION, params={"api-version": API_VERSION}, json={"properties": {"path": "x"}}
    )

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ResourceNotFound"
    assert extra.status_code == 400
    assert "properties.path is not a CodeVersion property" in extra.json()["error"]["message"]


def test_code_routes_need_the_bearer_token_like_every_arm_route(
    local_workspace: LocalWorkspace,
) -> None:
    with arm_client(local_workspace.endpoint, token=None) as anonymous:
        response = anonymous.get(VERSION, params={"api-version": API_VERSION})

    assert response.status_code == 401


def test_the_blob_endpoint_takes_only_the_container_s_own_signature(
    local_client: httpx.Client,
) -> None:
    reference = start_upload(local_client)
    sas = reference["credential"]["sasUri"]
    good = blob_url(sas, "src/a.py")
    forged = good.replace("sig=", "sig=x")

    assert httpx.put(forged, content=b"1", headers=BLOB_HEADERS).status_code == 403
    assert httpx.put(good, content=b"1").status_code == 400  # no x-ms-blob-type
    escape = blob_url(sas, "src/%2E%2E/%2E%2E/escaped.py")
    assert httpx.put(escape, content=b"1", headers=BLOB_HEADERS).status_code == 400
    assert httpx.head(good).status_code == 404
    assert httpx.head(good).headers["x-ms-error-code"] == "BlobNotFound"
    assert httpx.put(good, content=b"12", headers=BLOB_HEADERS).status_code == 201
    properties = httpx.head(good)
    assert (properties.status_code, properties.headers["content-length"]) == (200, "2")


def test_the_scripted_workspace_serves_no_code_assets(scripted_client: httpx.Client) -> None:
    response = scripted_client.get(VERSION, params={"api-version": API_VERSION})

    assert response.status_code == 404
