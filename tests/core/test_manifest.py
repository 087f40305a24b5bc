import json

import pytest

from amlwait.core.jobs import WorkspaceRef
from amlwait.core.manifest import ConnectionDefaults, parse_manifest
from amlwait.errors import ManifestError

DEFAULTS = ConnectionDefaults("sub", "rg", "ws")


def parse(document: object, defaults: ConnectionDefaults = DEFAULTS):
    return parse_manifest(json.dumps(document), "training_jobs.json", defaults)


def test_the_training_stage_format_resolves_to_the_default_workspace() -> None:
    manifest = parse({"jobs": ["PLANT001_CIRCUIT01_2025_11_01", "PLANT002_CIRCUIT01_2025_11_01"]})
    assert [job.name for job in manifest.jobs] == [
        "PLANT001_CIRCUIT01_2025_11_01",
        "PLANT002_CIRCUIT01_2025_11_01",
    ]
    assert manifest.workspaces == [WorkspaceRef("sub", "rg", "ws")]
    assert manifest.tag is None


def test_object_entries_put_jobs_in_other_workspaces_and_a_tag_is_kept() -> None:
    manifest = parse(
        {
            "jobs": [
                "A",
                {"name": "A", "workspace": "ws2"},
                {"name": "B", "subscription": "s2", "resource_group": "rg2", "workspace": "ws3"},
            ],
            "tag": "amlwait-batch-1",
        }
    )
    assert [str(job.workspace) for job in manifest.jobs] == [
        "sub/rg/ws",
        "sub/rg/ws2",
        "s2/rg2/ws3",
    ]
    assert manifest.tag == "amlwait-batch-1"
    assert len(manifest.workspaces) == 3


def test_a_manifest_round_trips_through_its_document() -> None:
    document = {
        "jobs": [
            "A",
            {"name": "B", "workspace": "other", "resource_group": "rg", "subscription": "sub"},
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
        parse({"jobs": ["A"]}, ConnectionDefaults("sub", None, None))
    assert "-g/--resource-group" in str(caught.value)
    assert "-w/--workspace-name" in str(caught.value)


def test_the_same_name_in_two_workspaces_is_two_jobs() -> None:
    manifest = parse({"jobs": ["A", {"name": "A", "workspace": "other"}]})
    assert len(manifest.jobs) == 2
