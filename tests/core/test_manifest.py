import json

import pytest

from amlwait.core.jobs import WorkspaceRef
from amlwait.core.manifest import ConnectionDefaults, parse_manifest
from amlwait.errors import ManifestError

SUB = "00000000-0000-0000-0000-000000000001"
SUB2 = "00000000-0000-0000-0000-000000000002"
DEFAULTS = ConnectionDefaults(SUB, "rg", "ws1")


def parse(document: object, defaults: ConnectionDefaults = DEFAULTS):
    return parse_manifest(json.dumps(document), "training_jobs.json", defaults)


def test_the_training_stage_format_resolves_to_the_default_workspace() -> None:
    manifest = parse({"jobs": ["PLANT001_CIRCUIT01_2025_11_01", "PLANT002_CIRCUIT01_2025_11_01"]})
    assert [job.name for job in manifest.jobs] == [
        "PLANT001_CIRCUIT01_2025_11_01",
        "PLANT002_CIRCUIT01_2025_11_01",
    ]
    assert manifest.workspaces == [WorkspaceRef(SUB, "rg", "ws1")]
    assert manifest.tag is None


def test_object_entries_put_jobs_in_other_workspaces_and_a_tag_is_kept() -> None:
    manifest = parse(
        {
            "jobs": [
                "A",
                {"name": "A", "workspace": "ws2"},
                {"name": "B", "subscription": SUB2, "resource_group": "rg2", "workspace": "ws3"},
            ],
            "tag": "amlwait-batch-1",
        }
    )
    assert [str(job.workspace) for job in manifest.jobs] == [
        f"{SUB}/rg/ws1",
        f"{SUB}/rg/ws2",
        f"{SUB2}/rg2/ws3",
    ]
    assert manifest.tag == "amlwait-batch-1"
    assert len(manifest.workspaces) == 3


def test_a_manifest_round_trips_through_its_document() -> None:
    document = {
        "jobs": [
            "A",
            {"name": "B", "workspace": "other", "resource_group": "rg", "subscription": SUB},
        ],
        "tag": "t",
    }
    manifest = parse(document)
    assert parse(manifest.to_document()) == manifest


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"jobs": []}, "training_jobs.json: the job list is empty; nothing to wait for"),
        (
            {"jobs": ["A", "B", "A"]},
            "training_jobs.json: jobs[2] A is listed twice (first at jobs[0])",
        ),
        ({"jobs": ["A b"]}, "jobs[0] 'A b' is not a valid Azure ML job name"),
        ({"jobs": ["-A"]}, "jobs[0] '-A' is not a valid Azure ML job name"),
        ({"jobs": ["A" * 256]}, "is not a valid Azure ML job name"),
        ({"jobs": ["A"], "extra": 1}, "unknown field extra; allowed fields are jobs, tag"),
        (
            {"jobs": [{"name": "A", "wrkspace": "x"}]},
            "jobs[0]: unknown field wrkspace; allowed fields are name, workspace, resource_group",
        ),
        ({"jobs": [{"workspace": "x"}]}, "jobs[0]: name is missing"),
        ({"jobs": [7]}, "jobs[0] must be a job name or an object with a name, not int"),
        ({"jobs": "A"}, "jobs must be a list of job names or objects"),
        ({}, "jobs is missing"),
        ([], "expected a JSON object"),
        ({"jobs": ["A"], "tag": ""}, "tag '' is empty"),
        ({"jobs": ["A"], "tag": "x" * 101}, "at most 100"),
    ],
)
def test_bad_manifests_are_one_clear_line(document: object, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(document)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith("training_jobs.json")


def test_not_json_says_where() -> None:
    with pytest.raises(ManifestError, match=r"not valid JSON .* line 1 column 2"):
        parse_manifest("{jobs: []}", "m.json", DEFAULTS)


def test_missing_connection_names_the_flags_to_give() -> None:
    with pytest.raises(ManifestError) as caught:
        parse({"jobs": ["A"]}, ConnectionDefaults(SUB, None, None))
    assert "-g/--resource-group" in str(caught.value)
    assert "-w/--workspace-name" in str(caught.value)


def test_the_same_name_in_two_workspaces_is_two_jobs() -> None:
    manifest = parse({"jobs": ["A", {"name": "A", "workspace": "other"}]})
    assert len(manifest.jobs) == 2


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "A", "subscription": ".."}, "the subscription '..' is not valid"),
        ({"name": "A", "subscription": "sub-1"}, "a subscription id is a GUID"),
        ({"name": "A", "subscription": SUB + "\n"}, "the subscription"),
        ({"name": "A", "resource_group": ".."}, "the resource group '..' is not valid"),
        ({"name": "A", "resource_group": "rg."}, "does not end in '.'"),
        ({"name": "A", "resource_group": "a/b"}, "the resource group 'a/b' is not valid"),
        ({"name": "A", "resource_group": "r" * 91}, "1-90"),
        ({"name": "A", "workspace": "../../../../x?y=1#"}, "the workspace"),
        ({"name": "A", "workspace": "WS\n"}, "the workspace 'WS\\n' is not valid"),
        ({"name": "A", "workspace": "ws"}, "3-33"),
        ({"name": "A", "workspace": "w" * 34}, "3-33"),
        ({"name": "A", "workspace": "-ws"}, "starts with a letter or digit"),
        ({"name": "j0\n"}, "jobs[0] 'j0\\n' is not a valid Azure ML job name"),
    ],
)
def test_every_arm_path_segment_follows_azures_naming_rule(
    entry: dict[str, str], message: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        parse({"jobs": [entry]})
    text = str(caught.value)
    assert message in text
    assert text.startswith("training_jobs.json: jobs[0]")
    assert "\n" not in text


def test_a_bad_command_line_default_is_refused_too() -> None:
    with pytest.raises(ManifestError, match=r"the resource group '\.\.' is not valid"):
        parse({"jobs": ["A"]}, ConnectionDefaults(SUB, "..", "ws1"))


def test_names_azure_accepts_pass() -> None:
    manifest = parse(
        {"jobs": [{"name": "A", "resource_group": "rg_(prod).eu-1", "workspace": "w_1-x"}]},
        ConnectionDefaults(SUB.upper(), "rg", "ws1"),
    )
    assert str(manifest.jobs[0].workspace) == f"{SUB.upper()}/rg_(prod).eu-1/w_1-x"
