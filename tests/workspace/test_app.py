"""The ARM contract as an HTTP client sees it: shapes, errors, auth, listing and paging."""

from __future__ import annotations

import uuid

import httpx

from amlwait.core.jobs import JobRef, studio_url_for
from amlwait.workspace import LocalWorkspace, ScriptedWorkspace
from tests.workspace.helpers import (
    API_VERSION,
    OTHER_WORKSPACE,
    WORKSPACE,
    WS_PATH,
    arm_client,
    get,
    job_path,
    put_job,
)

LIST_PATH = f"{WS_PATH}/jobs"


def _names(response: httpx.Response) -> list[str]:
    return [job["name"] for job in response.json()["value"]]


def _follow_all(client: httpx.Client, first: httpx.Response) -> tuple[list[str], int]:
    names, pages, response = _names(first), 1, first
    while "nextLink" in response.json():
        response = client.get(response.json()["nextLink"])  # verbatim, no params added
        assert response.status_code == 200
        names += _names(response)
        pages += 1
    return names, pages


def test_get_answers_the_arm_job_document(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    scripted_workspace.add_job(WORKSPACE, "train_1", [(0, "Running")], tags={"batch": "b1"})

    response = get(scripted_client, job_path("train_1"))

    assert response.status_code == 200
    job = response.json()
    assert job["id"] == f"{WS_PATH}/jobs/train_1"
    assert job["name"] == "train_1"
    assert job["type"] == "Microsoft.MachineLearningServices/workspaces/jobs"
    properties = job["properties"]
    assert properties["status"] == "Running"
    assert properties["tags"] == {"batch": "b1"}
    assert properties["experimentName"] == "Default"
    assert properties["displayName"] == "train_1"
    assert properties["services"]["Studio"]["endpoint"] == studio_url_for(
        JobRef(WORKSPACE, "train_1")
    )
    assert job["systemData"]["createdAt"].endswith("Z")
    assert job["systemData"]["createdByType"] == "User"
    uuid.UUID(response.headers["x-ms-request-id"])
    assert response.headers["x-ms-ratelimit-remaining-subscription-reads"] == "249"


def test_unknown_job_is_an_arm_404(scripted_client: httpx.Client) -> None:
    response = get(scripted_client, job_path("missing_job"))

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "NotFound",
            "message": "The job 'missing_job' was not found in workspace 'ws-1'.",
        }
    }
    assert "x-ms-request-id" in response.headers


def test_invalid_job_name_is_a_400(scripted_client: httpx.Client) -> None:
    response = get(scripted_client, job_path("-starts-with-dash"))

    assert response.status_code == 400
    assert "not a valid job name" in response.json()["error"]["message"]


def test_missing_api_version_is_refused(scripted_client: httpx.Client) -> None:
    response = scripted_client.get(job_path("any_job"))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"


def test_unknown_path_and_wrong_method_answer_json(scripted_client: httpx.Client) -> None:
    unknown = get(scripted_client, "/not/an/arm/path")
    wrong_method = scripted_client.delete(job_path("some_job"), params={"api-version": API_VERSION})

    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NotFound"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "MethodNotAllowed"


def test_fixed_path_segments_match_case_insensitively_like_arm(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    scripted_workspace.add_job(WORKSPACE, "job_a", [(0, "Queued")])
    lowered = job_path("job_a").replace("resourceGroups", "resourcegroups")

    assert get(scripted_client, lowered).status_code == 200


def test_request_without_bearer_token_is_401(scripted_workspace: ScriptedWorkspace) -> None:
    with arm_client(scripted_workspace.endpoint, token=None) as client:
        missing = get(client, job_path("a_job"))
        basic = client.get(
            job_path("a_job"),
            params={"api-version": API_VERSION},
            headers={"Authorization": "Basic Zm9vOmJhcg=="},
        )

    for response in (missing, basic):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "AuthenticationFailed"
        assert response.headers["www-authenticate"] == "Bearer"


def test_configured_token_is_enforced(tmp_path: object) -> None:
    with ScriptedWorkspace(token="s3cret") as workspace:
        workspace.add_job(WORKSPACE, "job_a", [(0, "Running")])
        with arm_client(workspace.endpoint, token="wrong") as wrong:
            refused = get(wrong, job_path("job_a"))
        with arm_client(workspace.endpoint, token="s3cret") as right:
            accepted = get(right, job_path("job_a"))

    assert refused.status_code == 401
    assert accepted.status_code == 200


def test_put_creates_then_updates_only_mutable_fields(local_client: httpx.Client) -> None:
    created = put_job(
        local_client,
        "job_put",
        command="true",
        tags={"a": "1"},
        displayName="first",
        computeId="cpu-cluster",
    )
    updated = put_job(
        local_client,
        "job_put",
        command="echo changed",
        tags={"b": "2"},
        displayName="second",
        description="now described",
        computeId="gpu-cluster",
    )

    assert created.status_code == 201
    assert created.json()["properties"]["status"] == "NotStarted"
    assert created.json()["properties"]["displayName"] == "first"
    assert updated.status_code == 200
    properties = get(local_client, job_path("job_put")).json()["properties"]
    assert properties["tags"] == {"b": "2"}  # replaced, not merged
    assert properties["displayName"] == "second"
    assert properties["description"] == "now described"
    assert properties["command"] == "true"
    assert properties["computeId"] == "cpu-cluster"


def test_put_with_bad_body_names_the_field(local_client: httpx.Client) -> None:
    url = job_path("job_bad")
    params = {"api-version": API_VERSION}
    cases = {
        "not json": local_client.put(
            url, params=params, content=b"{nope", headers={"Content-Type": "application/json"}
        ),
        "no properties": local_client.put(url, params=params, json={"tags": {}}),
        "jobType": local_client.put(
            url, params=params, json={"properties": {"jobType": "Sweep", "command": "x"}}
        ),
        "command": local_client.put(
            url, params=params, json={"properties": {"jobType": "Command"}}
        ),
        "tags": put_job(local_client, "job_bad", tags={"a": 1}),
    }

    for field, response in cases.items():
        assert response.status_code == 400, field
        error = response.json()["error"]
        assert set(error) == {"code", "message"}
    assert "JSON" in cases["not json"].json()["error"]["message"]
    assert "properties" in cases["no properties"].json()["error"]["message"]
    assert "jobType" in cases["jobType"].json()["error"]["message"]
    assert "command" in cases["command"].json()["error"]["message"]
    assert "tags" in cases["tags"].json()["error"]["message"]
    assert get(local_client, job_path("job_bad")).status_code == 404


def test_list_filters_on_tag_key_and_hides_archived_by_default(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    add = scripted_workspace.add_job
    add(WORKSPACE, "tagged_1", [(0, "Running")], tags={"batch": "x"})
    add(WORKSPACE, "untagged", [(0, "Running")])
    add(WORKSPACE, "tagged_archived", [(0, "Completed")], tags={"batch": ""}, archived=True)
    add(OTHER_WORKSPACE, "elsewhere", [(0, "Running")], tags={"batch": "x"})

    def listed(**params: str) -> list[str]:
        names, _ = _follow_all(scripted_client, get(scripted_client, LIST_PATH, **params))
        return names

    assert listed() == ["tagged_1", "untagged"]
    assert listed(tag="batch") == ["tagged_1"]
    assert listed(tag="batch", listViewType="All") == ["tagged_1", "tagged_archived"]
    assert listed(listViewType="ArchivedOnly") == ["tagged_archived"]
    assert get(scripted_client, LIST_PATH, listViewType="Bogus").status_code == 400


def test_list_pages_with_next_links_followed_verbatim(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    for i in range(5):
        scripted_workspace.add_job(WORKSPACE, f"job_{i}", [(0, "Running")], tags={"t": "v"})
    scripted_workspace.add_job(WORKSPACE, "no_tag", [(0, "Running")])

    first = get(scripted_client, LIST_PATH, tag="t")
    names, pages = _follow_all(scripted_client, first)

    assert names == [f"job_{i}" for i in range(5)]
    assert pages == 3  # page size 2
    next_link = httpx.URL(first.json()["nextLink"])
    assert next_link.params["tag"] == "t"
    assert next_link.params["api-version"] == API_VERSION
    assert "$skipToken" in next_link.params


def test_last_page_has_no_next_link(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    scripted_workspace.add_job(WORKSPACE, "only_job", [(0, "Running")])

    body = get(scripted_client, LIST_PATH).json()

    assert [j["name"] for j in body["value"]] == ["only_job"]
    assert "nextLink" not in body


def test_next_link_uses_the_scheme_and_host_the_client_used(
    scripted_workspace: ScriptedWorkspace, scripted_client: httpx.Client
) -> None:
    for i in range(3):
        scripted_workspace.add_job(WORKSPACE, f"job_{i}", [(0, "Running")])
    port = httpx.URL(scripted_workspace.endpoint).port

    response = scripted_client.get(
        LIST_PATH,
        params={"api-version": API_VERSION},
        headers={"Host": f"localhost:{port}"},
    )

    assert response.json()["nextLink"].startswith(f"http://localhost:{port}{LIST_PATH}?")


def test_local_list_pages_in_creation_order(
    local_workspace: LocalWorkspace, local_client: httpx.Client
) -> None:
    names = [f"job_{i}" for i in range(7)]
    for name in names:
        assert put_job(local_client, name, tags={"run": "r1"}).status_code == 201

    listed, pages = _follow_all(local_client, get(local_client, LIST_PATH, tag="run"))

    assert listed == names
    assert pages == 3  # page size 3
