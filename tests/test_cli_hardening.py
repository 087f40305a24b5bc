"""``amlwait wait`` / ``cancel`` / ``submit`` against a misbehaving ARM (issue 10, client side):
a real process, real HTTP on loopback, short real timelines. Every fault ends in a result,
the reports are written on every exit path, and no token reaches any output."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amlwait.azureml.arm import ArmJobSource
from amlwait.azureml.credentials import StaticToken, is_loopback
from amlwait.errors import InputError
from amlwait.workspace import ScriptedWorkspace
from tests.helpers import FAST, SECRET, WS, amlwait, manifest

REPORTS = ("json", "junit", "summary", "html")


@pytest.fixture
def workspace(realtime_workspace: ScriptedWorkspace) -> ScriptedWorkspace:
    return realtime_workspace


def report_flags(tmp_path: Path) -> list[str]:
    suffix = {"json": "json", "junit": "xml", "summary": "md", "html": "html"}
    flags: list[str] = []
    for kind in REPORTS:
        flags += [f"--{kind}", str(tmp_path / f"report.{suffix[kind]}")]
    return flags


def report_texts(tmp_path: Path) -> dict[str, str]:
    return {path.suffix: path.read_text() for path in sorted(tmp_path.glob("report.*"))}


# -- item 3: a request in flight cannot outlive the deadline ----------------------------------


def test_a_dripping_server_cannot_keep_a_wait_past_its_deadline(workspace, tmp_path) -> None:
    workspace.add_job(WS, "J", [(0, "Running")])
    workspace.faults.add("drip", delay=0.5, times=10**6)
    started = time.monotonic()
    result = amlwait(
        "wait",
        manifest(tmp_path, {"jobs": ["J"]}),
        *FAST,
        "--timeout",
        "2s",
        *report_flags(tmp_path),
        endpoint=workspace.endpoint,
        timeout=60,
    )
    took = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert took < 10, took  # one drip alone takes 4109 bytes x 0.5 s
    assert json.loads((tmp_path / "report.json").read_text())["outcome"] == "timed_out"


# -- item 4 / issue 14: say what is retried, after the first failure ----------------------------


def test_an_unreachable_endpoint_is_said_at_the_first_failure_with_its_deadline(tmp_path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = amlwait(
        "wait",
        manifest(tmp_path, {"jobs": ["J"]}),
        *FAST,
        "--read-path",
        "arm",  # ARM's first read says it (auto's first is the workspace resource)
        "--timeout",
        "3s",
        "--json",
        str(tmp_path / "r.json"),
        endpoint=f"http://127.0.0.1:{port}",
    )
    assert result.returncode == 3, result.stderr
    retrying = [line for line in result.stdout.splitlines() if line.startswith("retrying")]
    assert len(retrying) == 1, result.stdout
    assert "GET J: ConnectError" in retrying[0]
    assert "until the deadline" in retrying[0]
    assert json.loads((tmp_path / "r.json").read_text())["outcome"] == "timed_out"


# -- item 4: reports on every exit path ---------------------------------------------------------


def test_a_refused_request_still_writes_every_report_without_the_token(workspace, tmp_path) -> None:
    workspace.add_job(WS, "J", [(0, "Running")])
    workspace.add_job(WS, "K", [(0, "Completed")])
    workspace.faults.add("echo-authorization", match="J", times=10)
    result = amlwait(
        "wait",
        manifest(tmp_path, {"jobs": ["J", "K"]}),
        *FAST,
        *report_flags(tmp_path),
        endpoint=workspace.endpoint,
        env={"AMLWAIT_ACCESS_TOKEN": SECRET},
    )
    assert result.returncode == 2
    assert "400" in result.stderr and "***" in result.stderr
    texts = report_texts(tmp_path)
    assert sorted(texts) == [".html", ".json", ".md", ".xml"]
    document = json.loads(texts[".json"])
    assert document["outcome"] == "error"
    assert "was refused: 400" in document["error"]
    for text in [*texts.values(), result.stdout, result.stderr]:
        assert SECRET not in text


def test_an_internal_error_still_writes_every_report_and_exits_70(
    workspace, tmp_path, monkeypatch, capsys
) -> None:
    import amlwait.cli as main_cli
    from amlwait.waiter import Waiter

    workspace.add_job(WS, "J", [(0, "Running")])

    async def broken(self: Waiter, limit: float) -> None:
        raise RuntimeError("a bug in the read loop")

    monkeypatch.setattr(Waiter, "_read_due", broken)
    for name, value in (
        ("AZURE_SUBSCRIPTION_ID", WS.subscription),
        ("AZURE_RESOURCE_GROUP", WS.resource_group),
        ("AZUREML_WORKSPACE_NAME", WS.workspace),
        ("AMLWAIT_ARM_ENDPOINT", workspace.endpoint),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TF_BUILD", raising=False)
    path = manifest(tmp_path, {"jobs": ["J"]})
    with pytest.raises(SystemExit) as stop:
        main_cli.main(["wait", path, *report_flags(tmp_path)])
    assert stop.value.code == 70
    assert "internal error: RuntimeError: a bug in the read loop" in capsys.readouterr().err
    texts = report_texts(tmp_path)
    assert sorted(texts) == [".html", ".json", ".md", ".xml"]
    document = json.loads(texts[".json"])
    assert document["outcome"] == "error"
    assert document["error"] == "a bug in the read loop"
    assert [job["outcome"] for job in document["jobs"]] == ["unfinished"]


# -- items 6 and 15: tokens at start-up ---------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "problem"),
    [("abc\ndef-secret-token", "control character"), ("tökén-secret-value", "non-ASCII")],
)
def test_a_token_that_cannot_be_a_header_is_one_line_and_exit_2(
    workspace, tmp_path, token, problem
) -> None:
    workspace.add_job(WS, "J", [(0, "Completed")])
    result = amlwait(
        "wait",
        manifest(tmp_path, {"jobs": ["J"]}),
        endpoint=workspace.endpoint,
        env={"AMLWAIT_ACCESS_TOKEN": token},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0] and "AMLWAIT_ACCESS_TOKEN" in lines[0]
    for part in token.split("\n"):
        assert part not in result.stdout + result.stderr
    assert workspace.requests == [], "nothing was sent with it"


@pytest.mark.skipif(shutil.which("az") is not None, reason="an Azure CLI login may answer")
def test_without_a_credential_the_error_is_one_line(tmp_path) -> None:
    result = amlwait(
        "wait",
        manifest(tmp_path, {"jobs": ["J"]}),
        "--timeout",
        "30s",
        endpoint="https://arm.invalid",
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "could not get an Azure token" in lines[0] and "az login" in lines[0]


# -- item 5: loopback by address, never through a proxy -----------------------------------------


def test_loopback_is_decided_by_address() -> None:
    assert is_loopback("http://127.0.0.1:8765") and is_loopback("http://[::1]:1")
    assert not is_loopback("http://127.0.0.1.attacker.example/")
    with pytest.raises(InputError, match="plain http"):
        ArmJobSource(endpoint="http://127.0.0.1.attacker.example", credential=StaticToken("t"))


class RecordingProxy:
    """A loopback 'proxy' that records every request reaching it and answers 502."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(1)
                try:
                    self.seen.append(connection.recv(65536))
                    connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    with RecordingProxy() as recording:
        yield recording


def test_the_token_never_goes_through_a_proxy_to_loopback(workspace, tmp_path, proxy) -> None:
    workspace.add_job(WS, "J", [(0, "Completed")])
    env = {"AMLWAIT_ACCESS_TOKEN": SECRET, "NO_PROXY": "", "no_proxy": ""}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        env[name] = proxy.url
    result = amlwait(
        "wait", manifest(tmp_path, {"jobs": ["J"]}), *FAST, endpoint=workspace.endpoint, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert proxy.seen == []
    # The job's read, and the run-history/MLflow reads for its run time, all went direct.
    assert [r.job for r in workspace.requests if r.job] == ["J"]


# -- issue 14: a wrong token stops cancel and submit at once --------------------------------------


def test_cancel_with_a_refused_token_stops_at_once_with_exit_2(tmp_path) -> None:
    with ScriptedWorkspace(token="the-right-one") as secured:
        for name in ("A", "B", "C"):
            secured.add_job(WS, name, [(0, "Running")])
        result = amlwait(
            "cancel",
            manifest(tmp_path, {"jobs": ["A", "B", "C"]}),
            endpoint=secured.endpoint,
            env={"AMLWAIT_ACCESS_TOKEN": SECRET},
        )
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "401" in lines[0]
        assert "cancel failed" not in result.stdout
        assert "run the same command again" not in result.stdout
        assert secured.cancellations == []
        assert SECRET not in result.stdout + result.stderr


def test_submit_with_a_refused_token_writes_no_manifest_and_exits_2(
    tmp_path, monkeypatch, capsys
) -> None:
    from amlwait.workspace import LocalWorkspace
    from tests.submit.helpers import make_project, run_submit

    project = make_project(tmp_path / "repo")
    with LocalWorkspace(tmp_path / "ws", token="the-right-one") as secured:
        monkeypatch.setenv("AMLWAIT_ACCESS_TOKEN", SECRET)
        run = run_submit(capsys, *project.args(secured.endpoint))
        assert run.code == 2, run.out + run.err
        lines = run.err.strip().splitlines()
        assert len(lines) == 1 and "401" in lines[0]
        assert "run the same command again" not in run.out
        assert not project.output.exists(), "no manifest for `wait` to refuse"
        assert [r.status for r in secured.requests if r.method == "PUT"] == []
        assert SECRET not in run.out + run.err
