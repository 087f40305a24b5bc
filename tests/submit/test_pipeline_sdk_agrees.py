"""amlwait's PipelineJob and component bodies held against azure-ai-ml's own REST objects
for the same batch (the six example circuits), as test_azure_sdk does for command jobs.

Compared as the same reference, as there: ``computeId`` (SDK: the bare name, resolved at
submission; ours: its ARM id), the component (SDK: an anonymous ``CommandComponent``
registered at submission, ``code`` a local path; ours: a registered version named by its
content hash, ``code`` a file URI until the folder is uploaded). SDK-only markers
(``_source``) are left out."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from amlwait.submit.command import build_batch
from amlwait.submit.pipeline import plan_pipeline
from amlwait.submit.template import JobTemplate
from tests.helpers import WS

pytest.importorskip(
    "azure.ai.ml",
    reason="azure-ai-ml is not installed (pip install -e '.[test]' or amlwait[azure])",
)

from amlwait.submit.azure_sdk_pipeline import sdk_pipeline_job

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _plan_and_sdk() -> tuple[Any, dict[str, Any], Any]:
    batch = build_batch(
        EXAMPLES / "circuits.yaml", EXAMPLES / "job.yml", workspace=WS, run_date=date(2025, 11, 1)
    )
    plan = plan_pipeline(batch, "TRAINING_2025_11_01")
    job = sdk_pipeline_job(JobTemplate.load(EXAMPLES / "job.yml"), plan)
    rest: dict[str, Any] = job._to_rest_object().as_dict()["properties"]
    return plan, rest, job


def _without_markers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_markers(v) for k, v in value.items() if k != "_source"}
    return value


def test_the_pipeline_body_is_what_the_sdk_would_send() -> None:
    plan, sdk, _ = _plan_and_sdk()
    ours = plan.properties()

    for key in ("jobType", "displayName", "experimentName", "tags", "inputs", "outputs"):
        assert ours[key] == sdk[key], key
    assert _without_markers(sdk["settings"]) == ours["settings"]
    assert sdk.keys() - {"jobs"} <= ours.keys()


@pytest.mark.parametrize("index", range(6))
def test_each_node_is_what_the_sdk_would_send(index: int) -> None:
    plan, sdk, _ = _plan_and_sdk()
    step = plan.steps[index]
    theirs = _without_markers(dict(sdk["jobs"][step.node]))
    mine = dict(step.body)

    theirs.pop("componentId")
    assert mine.pop("componentId") == plan.component_id(step)
    assert mine.pop("computeId") == f"{WS.arm_path}/computes/{theirs.pop('computeId')}"
    assert mine == theirs


def test_each_component_is_the_sdks_anonymous_one() -> None:
    plan, _, job = _plan_and_sdk()
    for step in plan.steps:
        component = job.jobs[step.node].component
        theirs = component._to_rest_object().as_dict()["properties"]["componentSpec"]
        mine = step.component["componentSpec"]
        for key in ("type", "command", "environment", "is_deterministic", "outputs"):
            assert mine[key] == theirs[key], key
        assert {k: v["type"] for k, v in theirs["inputs"].items()} == {
            k: v["type"] for k, v in mine["inputs"].items()
        }
        assert Path(theirs["code"]).resolve().as_uri() == mine["code"]
