"""The pipeline rules without I/O: node names, the pipeline's status from its steps, and
the manifest's pipeline form."""

from __future__ import annotations

import json

import pytest

from amlwait.core.manifest import ConnectionDefaults, parse_manifest
from amlwait.core.pipeline import (
    NodeNameError,
    derive_pipeline_status,
    is_valid_node_name,
    node_name_for,
    node_names_for,
)
from amlwait.errors import ManifestError

DEFAULTS = ConnectionDefaults("00000000-0000-0000-0000-000000000001", "rg-1", "ws-1")


@pytest.mark.parametrize(
    ("circuit", "node"),
    [("PLANT001/CIRCUIT01", "plant001_circuit01"), ("01A", "_01a"), ("a-b.c", "a_b_c")],
)
def test_a_circuit_becomes_a_node_name_azure_ai_ml_accepts(circuit: str, node: str) -> None:
    assert node_name_for(circuit) == node
    assert is_valid_node_name(node)


def test_two_circuits_with_one_node_name_are_named_in_the_error() -> None:
    with pytest.raises(NodeNameError, match="'P/A-1' and 'P/A_1' both become pipeline node"):
        node_names_for(["P/A-1", "P/A_1"])


@pytest.mark.parametrize(
    ("current", "children", "keep_going", "status", "cancel"),
    [
        ("NotStarted", ["Queued", "NotStarted"], True, "Running", False),
        ("Running", ["Running", "Failed"], True, "Running", False),
        ("Running", ["Running", "Failed"], False, "Running", True),
        ("Running", ["Completed", "Failed"], True, "Failed", False),
        ("Running", ["Completed", "Canceled"], True, "Canceled", False),
        ("Running", ["Completed", "Completed"], False, "Completed", False),
        ("CancelRequested", ["Running", "Completed"], True, "CancelRequested", True),
        ("CancelRequested", ["Canceled", "Completed"], True, "Canceled", False),
        ("Running", [], True, "Completed", False),
    ],
)
def test_the_pipeline_status_follows_its_steps(
    current: str, children: list[str], keep_going: bool, status: str, cancel: bool
) -> None:
    step = derive_pipeline_status(current, children, continue_on_step_failure=keep_going)

    assert (step.status, step.cancel_children) == (status, cancel)
    assert (step.error is not None) == (status in ("Failed", "Canceled"))


def test_the_pipeline_manifest_round_trips() -> None:
    text = json.dumps(
        {"jobs": ["T_1"], "pipeline": "T_1", "steps": {"a": "A_1", "b": "B_1"}, "tag": "t"}
    )

    manifest = parse_manifest(text, "m.json", DEFAULTS)

    assert manifest.pipeline == "T_1" and manifest.steps == (("a", "A_1"), ("b", "B_1"))
    assert parse_manifest(json.dumps(manifest.to_document()), "m", DEFAULTS) == manifest.__class__(
        manifest.jobs, "t", "m", "T_1", (("a", "A_1"), ("b", "B_1"))
    )


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"jobs": ["A"], "steps": {"a": "A"}}, "steps needs pipeline"),
        ({"jobs": ["A", "B"], "pipeline": "A"}, "must be the one job jobs lists"),
        ({"jobs": ["A"], "pipelines": "A"}, "allowed fields are jobs, tag, pipeline, steps"),
    ],
)
def test_a_pipeline_manifest_that_contradicts_itself_is_one_line(
    document: dict[str, object], words: str
) -> None:
    with pytest.raises(ManifestError, match=words):
        parse_manifest(json.dumps(document), "m.json", DEFAULTS)
