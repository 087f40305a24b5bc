"""A local code folder reaches ARM as a registered code asset: once per batch, by content.

Real HTTP against the local workspace, which serves the code-version operations and the
blob endpoint its startPendingUpload hands out, and runs each job from the uploaded copy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlwait.core.jobs import JobRef
from amlwait.errors import InputError
from amlwait.submit.code_upload import scan_code_folder
from amlwait.workspace import LocalWorkspace
from amlwait.workspace.requestlog import RequestRecord
from tests.helpers import WS
from tests.submit.helpers import Project, make_project, run_submit, write

NAMES = [
    "PLANT001_CIRCUIT01_2025_11_01",
    "PLANT001_CIRCUIT02_2025_11_01",
    "PLANT002_CIRCUIT01_2025_11_01",
]
JOB_WITH_CODE = """\
type: command
command: python3 train.py {plant} {circuit}
code: src
environment: azureml:train-env:1
compute: azureml:cpu-cluster
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path / "ws", max_concurrent=3) as local:
        yield local


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = make_project(tmp_path / "repo", job=JOB_WITH_CODE)
    write(project.root / "src" / "train.py", "import sys\nprint('trained', *sys.argv[1:])\n")
    write(project.root / "src" / "lib" / "util.py", "X = 1\n")
    return project


def code_requests(workspace: LocalWorkspace) -> list[RequestRecord]:
    """The code-version and blob requests (everything but jobs)."""
    return [r for r in workspace.requests if "/codes/" in r.path or "/amlwaitblobs/" in r.path]


def code_id_of(workspace: LocalWorkspace, name: str) -> str:
    job = workspace.store.get_job(JobRef(WS, name))
    assert job is not None
    return str(job.properties["codeId"])


def wait_until_terminal(workspace: LocalWorkspace, name: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = workspace.store.get_job(JobRef(WS, name))
        if job is not None and job.status in ("Completed", "Failed", "Canceled"):
            return job.status
        time.sleep(0.05)
    raise AssertionError(f"{name} did not end")


def test_submit_uploads_and_registers_the_code_once_for_the_whole_batch(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_submit(capsys, *project.args(workspace.endpoint))

    assert run.code == 0, run.err
    folder = scan_code_folder((project.root / "src").resolve())
    asset_id = f"{WS.arm_path}/codes/{folder.content_hash}/versions/1"
    assert {code_id_of(workspace, name) for name in NAMES} == {asset_id}
    # GET (404) + startPendingUpload + one PUT per file (3) + the version PUT: 6, not 6 × 3.
    calls = [(r.method, r.status) for r in code_requests(workspace)]
    assert calls == [("GET", 404), ("POST", 200)] + [("PUT", 201)] * 3 + [("PUT", 201)]
    assert "code src/: uploaded 3 files" in run.out
    # Each job runs from the uploaded copy of the folder.
    for name in NAMES:
        assert wait_until_terminal(workspace, name) == "Completed"
    log = workspace.read_log(JobRef(WS, NAMES[2]))
    assert log is not None and "trained PLANT002 CIRCUIT01" in log
    assert (workspace.run_dir(JobRef(WS, NAMES[0])) / "code" / "lib" / "util.py").is_file()


def test_a_second_batch_with_the_same_folder_sends_one_request_for_its_code(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_submit(capsys, *project.args(workspace.endpoint)).code == 0
    first_id = code_id_of(workspace, NAMES[0])
    before = len(code_requests(workspace))

    args = project.args(workspace.endpoint)
    args[args.index("--date") + 1] = "2025-11-02"
    run = run_submit(capsys, *args)

    assert run.code == 0, run.err
    calls = [(r.method, r.status) for r in code_requests(workspace)[before:]]
    assert calls == [("GET", 200)]
    assert "is registered already" in run.out
    assert code_id_of(workspace, "PLANT001_CIRCUIT01_2025_11_02") == first_id


def test_a_changed_file_gives_a_new_code_version_and_leaves_the_old_one(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_submit(capsys, *project.args(workspace.endpoint)).code == 0
    first_id = code_id_of(workspace, NAMES[0])
    write(project.root / "src" / "train.py", "print('trained, version two')\n")

    args = project.args(workspace.endpoint)
    args[args.index("--date") + 1] = "2025-11-02"
    assert run_submit(capsys, *args).code == 0

    second_id = code_id_of(workspace, "PLANT001_CIRCUIT01_2025_11_02")
    assert second_id != first_id
    assert wait_until_terminal(workspace, "PLANT001_CIRCUIT01_2025_11_02") == "Completed"
    new_log = workspace.read_log(JobRef(WS, "PLANT001_CIRCUIT01_2025_11_02"))
    assert new_log is not None and "version two" in new_log
    assert wait_until_terminal(workspace, NAMES[0]) == "Completed"
    old_log = workspace.read_log(JobRef(WS, NAMES[0]))
    assert old_log is not None and "trained PLANT001 CIRCUIT01" in old_log


def test_the_content_hash_names_the_files_not_the_folder(tmp_path: Path) -> None:
    one = write(tmp_path / "one" / "train.py", "print(1)\n").parent
    two = write(tmp_path / "two" / "train.py", "print(1)\n").parent
    renamed = write(tmp_path / "three" / "main.py", "print(1)\n").parent

    assert scan_code_folder(one).content_hash == scan_code_folder(two).content_hash
    assert scan_code_folder(one).content_hash != scan_code_folder(renamed).content_hash
    write(two / "train.py", "print(2)\n")
    assert scan_code_folder(one).content_hash != scan_code_folder(two).content_hash


def test_an_empty_code_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(InputError, match="is empty"):
        scan_code_folder(tmp_path / "empty")


def test_the_content_hash_is_azure_ai_ml_s_own(tmp_path: Path) -> None:
    asset_utils = pytest.importorskip("azure.ai.ml._utils._asset_utils")
    folder = tmp_path / "src"
    write(folder / "train.py", "print('x')\n")
    write(folder / "B" / "data.txt", "bb\n")
    write(folder / "a" / "util.py", "")

    assert scan_code_folder(folder).content_hash == asset_utils.get_content_hash(folder)


def test_no_code_upload_to_an_endpoint_not_on_loopback_exits_2_having_sent_nothing(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_submit(capsys, *project.args("https://management.azure.com"), "--no-code-upload")

    assert run.code == 2
    assert run.err.count("\n") == 1
    assert "is a local folder, which https://management.azure.com cannot read" in run.err
    assert "without --no-code-upload" in run.err
    assert not project.output.exists()


def test_no_code_upload_sends_the_folder_as_a_file_uri_to_the_local_workspace(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_submit(capsys, *project.args(workspace.endpoint), "--no-code-upload")

    assert run.code == 0, run.err
    assert code_id_of(workspace, NAMES[0]) == (project.root / "src").resolve().as_uri()
    assert code_requests(workspace) == []


def test_a_code_folder_that_cannot_be_registered_stops_the_batch_before_any_job(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace.faults.add(
        "401", match=lambda record: record.path.endswith("/startPendingUpload"), times=5
    )

    run = run_submit(capsys, *project.args(workspace.endpoint))

    assert run.code == 2
    assert run.err.count("\n") == 1
    assert "code folder src/" in run.err
    assert not [r for r in workspace.requests if r.job is not None and r.method == "PUT"]
    assert not project.output.exists()


def test_the_manifest_lists_the_jobs_not_the_code(
    workspace: LocalWorkspace, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_submit(capsys, *project.args(workspace.endpoint)).code == 0

    assert json.loads(project.output.read_text())["jobs"] == NAMES
