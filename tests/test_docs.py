"""The README and docs/*.md say what the code does: their code blocks run or parse.

- Every ``python`` block is run in a real interpreter, in a directory holding a manifest
  ``training_jobs.json`` of jobs that a scripted workspace (real HTTP on loopback) reports
  Completed, with ``AMLWAIT_ARM_ENDPOINT`` pointing at it.
- Every ``amlwait …`` command line in a shell block is checked against the real CLI: the
  command exists and every flag it shows is one of that command's options.
- The synopsis blocks of ``wait``, ``submit``, ``serve``, ``workspace serve`` (README) and
  ``render`` (docs/azure-devops.md) name every option of their command (none forgotten).
- Every ``yaml`` block is valid against Microsoft's pipeline schema, with only the task
  inputs Microsoft documents (a list of ``steps`` is checked inside a job).
- The README's ``--json`` schema and output-variable list are the real keys and names.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml

from amlwait.workspace import ScriptedWorkspace
from tests.helpers import WS

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
FLAG = re.compile(r"(?<![\w.$/{-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")


def blocks(lang: str | None = None) -> Iterator[tuple[str, str]]:
    """``(where, body)`` of each fenced block (of language ``lang``, or all)."""
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for found in FENCE.finditer(text):
            if lang is None or found.group("lang") == lang:
                line = text.count("\n", 0, found.start()) + 1
                yield f"{path.relative_to(ROOT)}:{line}", found.group("body")


def root_command() -> click.Group:
    module = importlib.import_module("amlwait.cli")
    groups = [v for v in vars(module).values() if isinstance(v, click.Group)]
    assert groups, "amlwait.cli has no click group"
    return groups[0]


def command_for(words: list[str]) -> tuple[click.Command, list[str]]:
    """The deepest command named by ``words`` (after ``amlwait``) and the words it used."""
    command: click.Command = root_command()
    used: list[str] = []
    for word in words:
        found = (
            command.get_command(click.Context(command), word)
            if isinstance(command, click.Group)
            else None
        )
        if found is None:  # get_command: some commands are attached when first looked up
            break
        command = found
        used.append(word)
    return command, used


def options_of(command: click.Command, *, with_hidden: bool = True) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option) and (with_hidden or not param.hidden):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names | {"-h", "--help"}


def command_lines(body: str) -> Iterator[str]:
    """Each ``amlwait …`` command of a shell block, with its continuation lines."""
    current: list[str] = []
    for line in body.splitlines():
        stripped = line.strip()
        starts = re.search(r"(?:^|&& )(amlwait .*)", stripped)
        if starts:
            if current:
                yield " ".join(current)
            current = [starts.group(1)]
        elif current and line.startswith(" ") and stripped:
            current.append(stripped)
        elif current:
            yield " ".join(current)
            current = []
    if current:
        yield " ".join(current)


INLINE = re.compile(r"(?<!`)`(amlwait [^`\n]+)`(?!`)")


def documented_commands() -> Iterator[tuple[str, str]]:
    """Command lines of shell blocks, and inline code spans that start with ``amlwait ``."""
    for where, body in blocks():
        for line in command_lines(body):
            yield where, line
    for path in DOCS:
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        for found in INLINE.finditer(text):
            yield f"{path.relative_to(ROOT)} (inline)", found.group(1)


def test_every_documented_command_and_flag_exists() -> None:
    problems = []
    seen = 0
    for where, line in documented_commands():
        words = line.split()[1:]
        command, used = command_for([w for w in words if not w.startswith("-")][:2])
        if not used and words and not words[0].startswith("-"):
            problems.append(f"{where}: {line!r}: no such amlwait command")
            continue
        known = options_of(command)
        for flag in FLAG.findall(line.split("&&")[0]):
            if flag not in known:
                problems.append(f"{where}: amlwait {' '.join(used)} has no option {flag}")
        seen += 1
    assert seen >= 30, "the docs' command lines were not found"
    assert problems == []


SYNOPSES = {
    ("README.md", "wait"): set(),
    ("README.md", "submit"): set(),
    ("README.md", "serve"): {"--debug-token-leak"},
    ("README.md", "workspace serve"): set(),
    ("docs/azure-devops.md", "render"): set(),
    ("docs/azure-devops.md", "matrix"): set(),
}


@pytest.mark.parametrize(("doc", "name"), list(SYNOPSES))
def test_a_synopsis_names_every_option_of_its_command(doc: str, name: str) -> None:
    text = ""
    for where, body in blocks():
        for line in command_lines(body):
            if where.startswith(doc + ":") and re.match(rf"amlwait {name}\b", line):
                text = max(text, line, key=len)
    assert text, f"{doc} has no synopsis of amlwait {name}"
    if name == "wait":  # the wait synopsis lists one option per line
        text = "\n".join(body for _, body in blocks() if body.startswith("amlwait wait MANIFEST"))
    command, _ = command_for(name.split())
    shown = set(FLAG.findall(text))
    missing = {
        opt
        for opt in options_of(command, with_hidden=False) - {"-h", "--help"}
        if opt.startswith("--") and opt not in shown
    } - SYNOPSES[(doc, name)]
    # an option counts as shown when any of its spellings is
    for param in command.params:
        if isinstance(param, click.Option) and shown & set(param.opts + param.secondary_opts):
            missing -= set(param.opts + param.secondary_opts)
    assert missing == set(), f"{doc}: amlwait {name} synopsis lacks {sorted(missing)}"


def test_the_readme_json_schema_is_the_real_one() -> None:
    from amlwait.core.jobs import JobRef
    from amlwait.core.tracker import BatchOutcome, JobState
    from amlwait.result import WaitResult

    result = WaitResult(BatchOutcome.SUCCEEDED, [JobState(JobRef(WS, "j1"))], 1, 0, 1, 2)
    real = result.to_json()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**`--json FILE`:**") :]
    section = section[: section.index("\n\n")]
    top, _, rest = section.partition('"jobs":')
    job_part, _, tail = rest.partition("}]")
    quoted = re.compile(r'"([a-z_]+)"')
    assert set(quoted.findall(job_part)) == set(real["jobs"][0])
    outcomes = {outcome.value for outcome in BatchOutcome}
    assert set(quoted.findall(top + tail)) - outcomes | {"jobs"} == set(real)


def test_the_readme_output_variables_are_the_real_ones() -> None:
    from amlwait.core.tracker import BatchOutcome
    from amlwait.devops.reporter import output_variables
    from amlwait.result import WaitResult

    real = set(output_variables(WaitResult(BatchOutcome.SUCCEEDED, [], 0, 0, 1, 2)))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = readme[readme.index("output variables\n(") :]
    listed = listed[: listed.index(")")]
    assert set(re.findall(r"`(\w+)`", listed)) == real


YAML_BLOCKS = list(blocks("yaml"))


@pytest.mark.parametrize(("where", "body"), YAML_BLOCKS, ids=[w for w, _ in YAML_BLOCKS])
def test_a_yaml_block_is_schema_valid_with_documented_inputs(where: str, body: str) -> None:
    from tests.devops.test_render import check_pipeline

    document = yaml.load(body, Loader=yaml.BaseLoader)
    if "steps" in document and "jobs" not in document:
        job = {"job": "Docs", "pool": {"vmImage": "ubuntu-latest"}, "timeoutInMinutes": "60"}
        document = {"jobs": [{**job, "steps": document["steps"]}]}
    check_pipeline(document)


def test_the_benchmark_docs_state_the_real_time_speed_default() -> None:
    from bench.cli import REAL_TIME_SPEED

    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert f"default {REAL_TIME_SPEED:g}×" in text


@pytest.fixture
def completed_batch() -> Iterator[ScriptedWorkspace]:
    with ScriptedWorkspace(page_size=2) as workspace:
        for name in ("PLANT001_CIRCUIT01_2025_11_01", "PLANT001_CIRCUIT02_2025_11_01"):
            workspace.add_job(WS, name, [(0, "Completed")], tags={"amlwait-batch-docs": "1"})
        yield workspace


PYTHON_BLOCKS = list(blocks("python"))


@pytest.mark.parametrize(("where", "body"), PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_a_python_block_runs(
    where: str, body: str, completed_batch: ScriptedWorkspace, tmp_path: Path
) -> None:
    (tmp_path / "training_jobs.json").write_text(
        json.dumps({"jobs": ["PLANT001_CIRCUIT01_2025_11_01", "PLANT001_CIRCUIT02_2025_11_01"]})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "AMLWAIT"))}
    env.update(
        AMLWAIT_ARM_ENDPOINT=completed_batch.endpoint,
        AMLWAIT_ACCESS_TOKEN="docs-token",
        AZURE_SUBSCRIPTION_ID=WS.subscription,
        AZURE_RESOURCE_GROUP=WS.resource_group,
        AZUREML_WORKSPACE_NAME=WS.workspace,
        PYTHONWARNINGS="error::ResourceWarning",
        PYTHONDEVMODE="1",
    )
    run = subprocess.run(
        [sys.executable, "-c", body],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"{where}:\n{run.stderr}"
    assert "ResourceWarning" not in run.stderr, f"{where} leaves something open:\n{run.stderr}"
    assert any("/jobs" in r.path for r in completed_batch.requests), f"{where} sent no request"


def test_the_readme_has_a_python_example() -> None:
    assert any(where.startswith("README.md") for where, _ in PYTHON_BLOCKS)


def test_the_readme_says_what_the_skipping_tests_need() -> None:
    from tests.devops.test_render import SCHEMA_PATH
    from tests.service import conftest

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    schema = SCHEMA_PATH.resolve().relative_to(ROOT.parent)
    assert f"../{schema.as_posix()}" in readme
    assert "postgresql://postgres@127.0.0.1:5432/test" in readme
    assert conftest.POSTGRES_URL in readme or "AMLWAIT_TEST_POSTGRES_URL" in os.environ
    assert "AMLWAIT_TEST_POSTGRES_URL" in readme
