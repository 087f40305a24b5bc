"""``amlwait workspace serve``: bad options are one line and exit 2; serving stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from amlwait.core.jobs import WorkspaceRef
from amlwait.workspace.cli import workspace
from tests.workspace.helpers import arm_client, get, job_path

# Any subscription: the default --workspace is amlwait-demo/local.
DEMO = WorkspaceRef("sub-1", "amlwait-demo", "local")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "notaport"], "--port"),
        (["--port", "70000"], "--port"),
        (["--max-concurrent", "0"], "--max-concurrent"),
        (["--no-such-option"], "--no-such-option"),
        (["--host", "0.0.0.0"], "not a loopback address"),
        (["--host", "0.0.0.0", "--insecure-no-auth"], "not a loopback address"),
        (["--token", "t", "--insecure-no-auth"], "contradict"),
        (["--token", "bad\ntoken"], "--token"),
        (["--workspace", "a/b/c/d"], "is not NAME, RG/NAME"),
        (["--workspace", "x"], "is not a workspace name"),
        (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "missing.pem", "--tls-key", "missing.pem"], "--tls-cert"),
        (["--tls-cert", "{cert}", "--tls-key", "{cert}"], "cannot start the local workspace"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not really a certificate")
    args = [a.replace("{cert}", str(cert)) for a in args]

    result = CliRunner().invoke(
        workspace, ["serve", "--data", str(tmp_path / "data"), "--port", "0", *args]
    )

    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert expected in lines[0]
    assert "Traceback" not in result.output


def test_serve_prints_the_endpoint_and_stops_on_sigterm(tmp_path: Path) -> None:
    source_root = Path(__file__).resolve().parents[2] / "src"
    env = {
        **os.environ,
        "PYTHONPATH": f"{source_root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    env.pop("AMLWAIT_WORKSPACE_TOKEN", None)
    env.pop("AMLWAIT_ACCESS_TOKEN", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from amlwait.workspace.cli import workspace; workspace()",
            "serve",
            "--port",
            "0",
            "--data",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    timer = threading.Timer(20, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        endpoint = line.split("AMLWAIT_ARM_ENDPOINT=")[1].split()[0]
        token = line.split("AMLWAIT_ACCESS_TOKEN=")[1].split()[0]
        with arm_client(endpoint, token=token) as client:
            answered = get(client, job_path("absent", DEMO))
        with arm_client(endpoint, token="not-the-token") as client:
            refused = get(client, job_path("absent", DEMO))
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()

    assert len(token) >= 32  # generated at start, printed once in a form to export
    assert refused.status_code == 401
    assert httpx.URL(endpoint).host == "127.0.0.1"
    assert answered.status_code == 404
    assert answered.json()["error"]["code"] == "NotFound"  # the job, in a served workspace
    assert process.returncode == 0
    assert "Traceback" not in stderr
