"""Helpers for tests that run ``amlwait`` as a user would: a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from amlwait.core.jobs import WorkspaceRef

WS = WorkspaceRef("00000000-0000-0000-0000-0000000000a1", "rg-1", "ws-1")
FAST = ["--poll-interval", "0.05s", "--max-poll-interval", "0.2s"]
SECRET = "s3cr3t-token-value"


def amlwait(
    *args: str,
    endpoint: str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "AMLWAIT", "TF_BUILD"))
    }
    environment.update(
        {
            "AZURE_SUBSCRIPTION_ID": WS.subscription,
            "AZURE_RESOURCE_GROUP": WS.resource_group,
            "AZUREML_WORKSPACE_NAME": WS.workspace,
        }
    )
    if endpoint:
        environment["AMLWAIT_ARM_ENDPOINT"] = endpoint
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "amlwait", *args],
        input=stdin,
        text=True,
        capture_output=True,
        env=environment,
        timeout=timeout,
    )


def manifest(tmp_path: Path, document: object) -> str:
    path = tmp_path / "training_jobs.json"
    path.write_text(json.dumps(document))
    return str(path)
