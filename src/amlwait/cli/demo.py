"""``amlwait demo``: the pipeline's two stages, offline, on this machine.

1. Starts the local workspace in this process (a temporary data folder).
2. Training stage: ``amlwait submit`` of ``examples/circuits.yaml`` with
   ``examples/job.yml`` — one real training job per plant and circuit, run by the local
   workspace as the Azure ML runtime would (code folder copied, inputs and outputs
   substituted); it writes ``training_jobs.json``.
3. Waiting stage: ``amlwait wait`` of that manifest through the same code paths as
   against Azure (by default MLflow searches by batch tag, each end confirmed by an ARM
   GET, a LIST by tag as the safety net), with live progress, then the JUnit, Markdown
   and HTML reports and the JSON result in the output folder.

``--as-pipeline`` submits the circuits as ONE pipeline job (``submit --as-pipeline``, one
step per circuit, ``continue_on_step_failure``) and waits for it: the pipeline job decides
the exit code, its steps are the per-circuit reports.

``--fail PLANT/CIRCUIT`` points that circuit at a sensor table that does not exist, so its
training fails and the failure path shows (``--fail N`` fails the first N circuits).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEMO_RESOURCE_GROUP = "amlwait-demo"
DEMO_WORKSPACE = "local"


def examples_folder() -> Path:
    """``examples/`` of a source checkout, or the copy shipped inside the package."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "examples", package.parents[1] / "examples"):
        if (candidate / "circuits.yaml").is_file():
            return candidate
    raise FileNotFoundError("the demo's examples/ folder is missing from this installation")


def _circuits_with_failures(source: Path, fail: Sequence[str], target: Path) -> list[str]:
    """Copy the circuits file, pointing the chosen circuits at a missing sensor table."""
    import yaml  # type: ignore[import-untyped]

    from amlwait.errors import InputError

    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    keys = [
        (plant, circuit)
        for plant, body in document["plants"].items()
        for circuit in body["circuits"]
    ]
    chosen: list[tuple[str, str]] = []
    for item in fail:
        if item.isdigit():
            chosen.extend(keys[: int(item)])
            continue
        plant, _, circuit = item.partition("/")
        if (plant, circuit) not in keys:
            known = ", ".join(f"{p}/{c}" for p, c in keys)
            raise InputError(f"--fail {item}: no such circuit in the demo; choose from {known}")
        chosen.append((plant, circuit))
    for plant, circuit in chosen:
        params = document["plants"][plant]["circuits"][circuit]
        params["sensor_table"] = f"{params['sensor_table']}_missing"
    target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return [f"{plant}/{circuit}" for plant, circuit in chosen]


def _wait_options(output: Path, retries: int) -> dict[str, Any]:
    return {
        "subscription": DEMO_SUBSCRIPTION,
        "resource_group": DEMO_RESOURCE_GROUP,
        "workspace_name": DEMO_WORKSPACE,
        "api_version": "2025-12-01",
        "timeout": 600.0,
        "poll_interval": 0.5,
        "max_poll_interval": 2.0,
        "not_found_grace": 60.0,
        "not_responding_grace": 60.0,
        "fail_fast": False,
        "cancel_remaining": False,
        "cancel_on_interrupt": True,  # the demo's jobs are nobody else's
        "json_path": str(output / "result.json"),
        "junit_path": str(output / "junit.xml"),
        "summary_path": str(output / "summary.md"),
        "html_path": str(output / "report.html"),
        "azure_devops": None,
        "max_requests_per_second": 10.0,
        "retries": retries,
        "update_manifest": str(output / "training_jobs.json") if retries else None,
    }


def _show_failed_logs(workspace: Any, result_path: Path) -> None:
    """The end of each failed job's log, as ``amlwait logs JOB`` would print it."""
    import json

    from amlwait.core.jobs import JobRef, WorkspaceRef

    where = WorkspaceRef(DEMO_SUBSCRIPTION, DEMO_RESOURCE_GROUP, DEMO_WORKSPACE)
    for job in json.loads(result_path.read_text(encoding="utf-8"))["jobs"]:
        if job["status"] != "Failed":
            continue
        log = workspace.log_path(JobRef(where, job["name"]))
        lines = (
            log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
        )
        print(f"== amlwait logs {job['name']} (last lines)")
        for line in lines[-4:]:
            print(f"   {line}")


def _show_failed_step_logs(workspace: Any, manifest_path: Path) -> None:
    """The end of each failed step's log (a pipeline's steps are named by run id)."""
    import json

    from amlwait.core.jobs import JobRef, WorkspaceRef

    where = WorkspaceRef(DEMO_SUBSCRIPTION, DEMO_RESOURCE_GROUP, DEMO_WORKSPACE)
    pipeline = json.loads(manifest_path.read_text(encoding="utf-8"))["pipeline"]
    for step in workspace.store.children_of(JobRef(where, pipeline)):
        if step.status != "Failed":
            continue
        log = workspace.log_path(step.ref)
        lines = (
            log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
        )
        print(f"== amlwait logs {step.ref.name} ({step.properties.get('displayName')}, last lines)")
        for line in lines[-4:]:
            print(f"   {line}")


def run_demo(
    *, fail: Sequence[str], output: str, retries: int = 0, as_pipeline: bool = False
) -> int:
    from amlwait.cli.wait import run_wait
    from amlwait.submit.command import run_submit
    from amlwait.workspace import LocalWorkspace

    examples = examples_folder()
    out_dir = Path(output).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="amlwait-demo-") as scratch:
        work = Path(scratch)
        # The job template names its code folder relative to itself: keep them together.
        shutil.copytree(examples / "train", work / "train")
        shutil.copy(examples / "job.yml", work / "job.yml")
        failing = _circuits_with_failures(examples / "circuits.yaml", fail, work / "circuits.yaml")
        with LocalWorkspace(work / "workspace", max_concurrent=2) as workspace:
            os.environ["AMLWAIT_ARM_ENDPOINT"] = workspace.endpoint
            print(f"== local workspace at {workspace.endpoint} (2 jobs at a time)", flush=True)
            if failing:
                print(f"== {', '.join(failing)} will fail: its sensor table is missing")
            what = "amlwait submit --as-pipeline" if as_pipeline else "amlwait submit"
            print(f"== training stage: {what}", flush=True)
            manifest = out_dir / "training_jobs.json"
            code = run_submit(
                circuits=str(work / "circuits.yaml"),
                job=str(work / "job.yml"),
                run_date=dt.datetime.now(dt.timezone.utc).date(),
                only=(),
                name_pattern=None,
                concurrency=8,
                retry_failed=False,
                dry_run=False,
                matrix_variable=None,
                output=str(manifest),
                subscription=DEMO_SUBSCRIPTION,
                resource_group=DEMO_RESOURCE_GROUP,
                workspace_name=DEMO_WORKSPACE,
                arm_endpoint=workspace.endpoint,
                api_version="2025-12-01",
                as_pipeline=as_pipeline,
                pipeline_name=None,
                via="arm",
            )
            if code != 0:
                return code
            print("== waiting stage: amlwait wait", flush=True)
            options = _wait_options(out_dir, retries)
            code = run_wait(str(manifest), arm_endpoint=workspace.endpoint, **options)
            if as_pipeline:
                _show_failed_step_logs(workspace, manifest)
            else:
                _show_failed_logs(workspace, out_dir / "result.json")
            print(
                f"== reports in {out_dir}: training_jobs.json, result.json, junit.xml, "
                "summary.md, report.html",
                flush=True,
            )
            sys.stdout.flush()
            return code
