"""The local workspace answers as Microsoft's published spec (stable 2024-04-01) says.

Every ARM answer a run of the local workspace gives (success and error, every route) is
validated against the response schema of its operation in the shipped spec; the spec's own
example bodies are PUT. The deliberate differences are pinned here and listed in
docs/workspace.md.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amlwait.core.jobs import WorkspaceRef
from amlwait.workspace import LocalWorkspace, ScriptedWorkspace
from amlwait.workspace.app import SUPPORTED_API_VERSIONS
from tests.workspace.helpers import ENVIRONMENT_ID, arm_client, wait_until
from tests.workspace.spec_contract import EXAMPLES, SpecContract, spec_available

pytestmark = pytest.mark.skipif(
    not spec_available(),
    reason="the Azure ML REST spec is not at ../shared/reference/azure-ml-rest-spec/ "
    "beside the repository (a read-only reference copy); the contract cannot be checked",
)

SERVED = WorkspaceRef("00000000-1111-2222-3333-444444444444", "test-rg", "my-aml-workspace")
OTHER = WorkspaceRef(SERVED.subscription, SERVED.resource_group, "not-served")
SPEC_VERSION = "2024-04-01"
# Routes of the local workspace that are not operations of the spec.
NOT_IN_SPEC = ("/mfeOperationResults/", "/amlwaitLogs")


@pytest.fixture(scope="module")
def contract() -> SpecContract:
    return SpecContract.load()


class Recorder:
    """Every answer an httpx client got: (method, path, status, body or None, headers)."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, str, int, Any, httpx.Headers]] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        body = response.json() if response.content else None
        request = response.request
        self.answers.append(
            (request.method, request.url.path, response.status_code, body, response.headers)
        )

    def arm(self) -> list[tuple[str, str, int, Any, httpx.Headers]]:
        return [a for a in self.answers if a[1].startswith("/subscriptions/")]


def _client(endpoint: str, recorder: Recorder) -> httpx.Client:
    return arm_client(endpoint, event_hooks={"response": [recorder]})


def _job(name: str, workspace: WorkspaceRef = SERVED) -> str:
    return f"{workspace.arm_path}/jobs/{name}"


def _command(command: str, **extra: Any) -> dict[str, Any]:
    return {
        "properties": {
            "jobType": "Command",
            "command": command,
            "environmentId": ENVIRONMENT_ID,
            **extra,
        }
    }


def _terminal(client: httpx.Client, name: str) -> str:
    def reached() -> str | None:
        status = client.get(_job(name), params={"api-version": SPEC_VERSION}).json()
        value = str(status["properties"]["status"])
        return value if value in ("Completed", "Failed", "Canceled") else None

    return wait_until(reached, timeout=20)


def _example(kind: str) -> dict[str, Any]:
    document = json.loads((EXAMPLES / "Job" / kind / "createOrUpdate.json").read_text())
    body: dict[str, Any] = document["parameters"]["body"]
    return body


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Recorder]:
    """A scripted session over the local workspace: every route, success and refusal."""
    recorder = Recorder()
    python = sys.executable
    with (
        LocalWorkspace(tmp_path / "ws", workspaces=[SERVED], page_size=2) as local,
        _client(local.endpoint, recorder) as client,
    ):
        v = {"api-version": SPEC_VERSION}
        client.get(SERVED.arm_path, params=v)
        client.get(OTHER.arm_path, params=v)
        client.put(_job("ok"), params=v, json=_command("true", tags={"batch": "b1"}))
        client.put(_job("ok"), params=v, json=_command("true", tags={"batch": "b2"}))
        failing = f"{python} -c \"import sys; sys.exit('error: sensor table t1 does not exist')\""
        client.put(_job("fails"), params=v, json=_command(failing))
        services = {"Tracking": {"jobServiceType": "Tracking", "endpoint": "x", "port": 1}}
        client.put(_job("long"), params=v, json=_command("sleep 30", services=services))
        client.put(_job("other"), params={"api-version": "2025-12-01"}, json=_command("true"))
        for name in ("ok", "fails"):
            _terminal(client, name)
        client.post(_job("long") + "/cancel", params=v)
        _terminal(client, "long")
        client.post(_job("long") + "/cancel", params=v)  # already terminal: 200
        for name in ("ok", "fails", "long", "other"):
            client.get(_job(name), params=v)
        first = client.get(_job("").rstrip("/"), params={**v, "listViewType": "All"}).json()
        client.get(first["nextLink"])
        skip = httpx.URL(first["nextLink"]).params["$skipToken"]
        client.get(_job("").rstrip("/"), params={**v, "$skip": skip})
        # refusals
        client.get(_job("absent"), params=v)
        client.get(_job("absent", OTHER), params=v)
        client.get(_job("ok"))
        client.get(_job("ok"), params={"api-version": "1999-01-01"})
        client.get(_job("ok"), params={"api-version": "not-a-version"})
        client.put(
            _job("noenv"), params=v, json={"properties": {"jobType": "Command", "command": "true"}}
        )
        client.put(_job("plain"), params=v, content=b"{}", headers={"Content-Type": "text/plain"})
        client.put(_job("bad name!"), params=v, json=_command("true"))
        client.post(_job("absent") + "/cancel", params=v)
        client.get(_job("ok"), params={**v, "listViewType": "Nope"})
        with arm_client(local.endpoint, token=None, event_hooks={"response": [recorder]}) as bare:
            bare.get(_job("ok"), params=v)
        yield recorder


def test_every_arm_answer_of_the_local_workspace_matches_the_spec(
    contract: SpecContract, recorded: Recorder
) -> None:
    checked = 0
    problems: list[str] = []
    for method, path, status, body, _ in recorded.arm():
        if any(marker in path for marker in NOT_IN_SPEC):
            continue
        for error in contract.check(method, path, status, body):
            problems.append(f"{method} {path} → {status}: {error}")
        checked += 1

    print(f"{checked} ARM answers checked against the spec")
    assert problems == []
    statuses = {a[2] for a in recorded.arm()}
    assert {200, 201, 202, 400, 401, 404, 415} <= statuses
    assert checked >= 25


def test_the_cancel_answer_carries_the_headers_the_spec_names(recorded: Recorder) -> None:
    accepted = [a for a in recorded.arm() if a[0] == "POST" and a[2] == 202]
    assert accepted
    for _, _, _, body, headers in accepted:
        assert body is None
        assert 10 <= int(headers["Retry-After"]) <= 600  # integer, minimum 10, maximum 600
        assert "/mfeOperationResults/" in headers["Location"]


def test_a_failed_jobs_arm_body_has_no_error_and_run_history_has_it(recorded: Recorder) -> None:
    failed = [a for a in recorded.arm() if a[0] == "GET" and a[1].endswith("/jobs/fails")]
    properties = failed[-1][3]["properties"]
    assert properties["status"] == "Failed"
    assert "error" not in properties


def test_system_data_and_services_as_the_spec_shows_them(recorded: Recorder) -> None:
    long = [a for a in recorded.arm() if a[0] == "GET" and a[1].endswith("/jobs/long")][-1][3]
    assert long["systemData"]["lastModifiedBy"]
    assert long["systemData"]["lastModifiedByType"] == "User"
    tracking = long["properties"]["services"]["Tracking"]
    assert tracking["jobServiceType"] == "Tracking" and tracking["port"] == 1
    assert tracking["status"] == "Canceled"
    # a local job's Studio link is its log page on this workspace (ml.azure.com is dead offline)
    studio = long["properties"]["services"]["Studio"]
    assert studio["jobServiceType"] == "Studio"
    assert studio["endpoint"].endswith("/jobs/long/amlwaitLogs?api-version=2024-04-01")
    assert studio["endpoint"].startswith("http://127.0.0.1:")


def test_skip_is_honoured_as_the_spec_names_it(recorded: Recorder) -> None:
    lists = [a for a in recorded.arm() if a[0] == "GET" and a[1].endswith("/jobs")]
    first, followed, skipped = lists[0][3], lists[1][3], lists[2][3]
    names = [job["name"] for job in first["value"]]
    assert len(names) == 2
    assert [j["name"] for j in skipped["value"]] == [j["name"] for j in followed["value"]]
    assert not set(names) & {j["name"] for j in skipped["value"]}


@pytest.mark.parametrize(
    ("version", "code"),
    [
        ("1999-01-01", "NoRegisteredProviderFound"),
        ("not-a-version", "InvalidApiVersionParameter"),
        ("", "InvalidApiVersionParameter"),
    ],
)
def test_an_unknown_api_version_is_refused_naming_the_supported_ones(
    version: str, code: str
) -> None:
    with ScriptedWorkspace() as scripted, arm_client(scripted.endpoint) as client:
        refused = client.get(_job("x"), params={"api-version": version})
        accepted = [
            client.get(_job("x"), params={"api-version": v}).status_code
            for v in ("2024-04-01", "2025-12-01")
        ]

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == code
    assert all(v in refused.json()["error"]["message"] for v in SUPPORTED_API_VERSIONS)
    assert accepted == [404, 404]  # a known version reaches the job (which is absent)


def test_the_specs_command_job_example_is_accepted_and_echoed(contract: SpecContract) -> None:
    body = _example("CommandJob")
    with ScriptedWorkspace() as scripted, arm_client(scripted.endpoint) as client:
        created = client.put(_job("example"), params={"api-version": SPEC_VERSION}, json=body)

    assert created.status_code == 201
    assert contract.check("PUT", _job("example"), 201, created.json()) == []
    echoed = created.json()["properties"]
    for key in ("command", "environmentId", "codeId", "inputs", "outputs", "limits", "identity"):
        assert echoed[key] == body["properties"][key], key
    assert echoed["services"]["string"]["status"] == "NotStarted"


def test_the_local_workspace_runs_the_example_once_its_paths_are_local(
    contract: SpecContract, tmp_path: Path
) -> None:
    body = copy.deepcopy(_example("CommandJob"))
    as_published = copy.deepcopy(body)
    properties = body["properties"]
    properties["command"] = "true"
    del properties["codeId"]
    properties["outputs"]["string"].pop("uri")
    with (
        LocalWorkspace(tmp_path / "ws", workspaces=[SERVED]) as local,
        arm_client(local.endpoint) as client,
    ):
        refused = client.put(
            _job("published"), params={"api-version": SPEC_VERSION}, json=as_published
        )
        created = client.put(_job("local"), params={"api-version": SPEC_VERSION}, json=body)

    # Deliberate difference: the local workspace runs what it is given, so a codeId or an
    # output uri that is not a local path is refused at submission (a code asset's ARM id
    # is the code-asset helper's work; "string" is neither).
    assert refused.status_code == 400
    assert contract.check("PUT", _job("published"), 400, refused.json()) == []
    assert created.status_code == 201, created.text
    assert contract.check("PUT", _job("local"), 201, created.json()) == []


@pytest.mark.parametrize("kind", ["SweepJob", "AutoMLJob"])
def test_other_job_types_are_refused_with_an_arm_error(contract: SpecContract, kind: str) -> None:
    with ScriptedWorkspace() as scripted, arm_client(scripted.endpoint) as client:
        refused = client.put(
            _job("other"), params={"api-version": SPEC_VERSION}, json=_example(kind)
        )

    # Deliberate difference: command jobs only.
    assert refused.status_code == 400
    assert "jobType" in refused.json()["error"]["message"]
    assert contract.check("PUT", _job("other"), 400, refused.json()) == []


def test_the_specs_pipeline_example_without_steps_is_refused_naming_them(
    contract: SpecContract, tmp_path: Path
) -> None:
    with (
        LocalWorkspace(tmp_path / "ws", workspaces=[SERVED]) as local,
        arm_client(local.endpoint) as client,
    ):
        refused = client.put(
            _job("other"), params={"api-version": SPEC_VERSION}, json=_example("PipelineJob")
        )

    # Deliberate difference: the example has no "jobs"; the local workspace runs steps.
    assert refused.status_code == 400
    assert "properties.jobs" in refused.json()["error"]["message"]
    assert contract.check("PUT", _job("other"), 400, refused.json()) == []


def test_pipeline_jobs_and_component_versions_match_the_spec(
    contract: SpecContract, tmp_path: Path
) -> None:
    component = f"{SERVED.arm_path}/components/train/versions/1"
    spec = {"type": "command", "command": "echo ${{inputs.c}}", "environment": "azureml:e:1"}
    node = {
        "type": "command",
        "componentId": "azureml:" + component,
        "inputs": {"c": {"job_input_type": "literal", "value": "A"}},
    }
    pipeline = {
        "properties": {
            "jobType": "Pipeline",
            "jobs": {"a": node},
            "settings": {"continue_on_step_failure": True},
        }
    }
    v = {"api-version": SPEC_VERSION}
    with (
        LocalWorkspace(tmp_path / "ws", workspaces=[SERVED]) as local,
        arm_client(local.endpoint) as client,
    ):
        answers = [
            (
                "PUT",
                component,
                client.put(component, params=v, json={"properties": {"componentSpec": spec}}),
            ),
            ("GET", component, client.get(component, params=v)),
            ("PUT", _job("pipe"), client.put(_job("pipe"), params=v, json=pipeline)),
        ]
        _terminal(client, "pipe")
        answers.append(("GET", _job("pipe"), client.get(_job("pipe"), params=v)))
        step = client.get(f"/history/v1.0{SERVED.arm_path}/runs/pipe/children").json()
        child = client.get(_job(step["value"][0]["runId"]), params=v)

    for method, path, answer in answers:
        assert answer.status_code in (200, 201), answer.text
        assert contract.check(method, path, answer.status_code, answer.json()) == [], path
    assert answers[-1][2].json()["properties"]["status"] == "Completed"
    # Deliberate difference from the spec, as Azure ML answers: a step's ARM body is null.
    assert child.status_code == 200 and child.json()["properties"] is None
    assert contract.check("GET", _job("x"), 200, child.json()) != []


def test_a_command_job_without_environment_is_refused_as_the_spec_requires() -> None:
    with ScriptedWorkspace() as scripted, arm_client(scripted.endpoint) as client:
        refused = client.put(
            _job("noenv"),
            params={"api-version": SPEC_VERSION},
            json={"properties": {"jobType": "Command", "command": "true"}},
        )

    assert refused.status_code == 400
    assert "environmentId" in refused.json()["error"]["message"]


def test_the_workspace_resource_matches_the_spec(contract: SpecContract) -> None:
    with ScriptedWorkspace() as scripted, arm_client(scripted.endpoint) as client:
        answer = client.get(SERVED.arm_path, params={"api-version": SPEC_VERSION})

    assert answer.status_code == 200
    assert contract.check("GET", SERVED.arm_path, 200, answer.json()) == []
    properties = answer.json()["properties"]
    assert properties["discoveryUrl"] == f"{scripted.endpoint}/discovery"
    assert properties["mlFlowTrackingUri"] == f"{scripted.endpoint}/mlflow/v1.0{SERVED.arm_path}"
