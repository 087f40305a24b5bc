"""Reports and manifests are no secrets: they are written with the user's umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from amlwait.workspace import ScriptedWorkspace
from tests.helpers import FAST, WS, manifest


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_reports_follow_the_umask(
    realtime_workspace: ScriptedWorkspace, tmp_path: Path, umask: int, mode: int
) -> None:
    realtime_workspace.add_job(WS, "job_a", [(0, "Completed")])
    reports = {
        flag: tmp_path / f"out{flag.replace('-', '_')}"
        for flag in ("--json", "--junit", "--summary", "--html")
    }
    args = [arg for flag, path in reports.items() for arg in (flag, str(path))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "AMLWAIT", "TF_"))}
    env.update(
        AMLWAIT_ARM_ENDPOINT=realtime_workspace.endpoint,
        AMLWAIT_ACCESS_TOKEN="t",
        AZURE_SUBSCRIPTION_ID=WS.subscription,
        AZURE_RESOURCE_GROUP=WS.resource_group,
        AZUREML_WORKSPACE_NAME=WS.workspace,
    )
    command = [
        sys.executable,
        "-m",
        "amlwait",
        "wait",
        manifest(tmp_path, {"jobs": ["job_a"]}),
        *FAST,
        *args,
    ]
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(umask),
    )

    assert done.returncode == 0, done.stderr
    modes = {flag: stat.S_IMODE(path.stat().st_mode) for flag, path in reports.items()}
    assert modes == dict.fromkeys(reports, mode)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
