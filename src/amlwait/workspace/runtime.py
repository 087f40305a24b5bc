"""What Azure ML's runtime does to a command job before its command runs, done locally.

:func:`plan_run` reads a job's ARM properties (no I/O) and says what will run where;
:func:`prepare_run` makes the run directory ready (the only I/O). The store plans every
new job when it is PUT, so a job that cannot run is refused with a 400, as Azure ML
refuses it at submission; the runner plans it again (the same answer) and prepares it
just before starting the process, so a restart in between changes nothing.

The properties understood (``RUN`` is the job's run directory)::

    "codeId": "file:///ABS/DIR" | "/ABS/DIR"
        copied to RUN/code/ when the job starts (without __pycache__, .git and the
        workspace's own data dir); the command runs there. Without codeId: in RUN.
      | "/subscriptions/.../codes/NAME/versions/V"
        a code version uploaded to this workspace (:mod:`~.assets`; looked up when
        planned, an unknown one is refused); its folder is copied the same way.
        Any other Azure ML asset ("azureml:...") is refused.
    "inputs": {NAME: {"jobInputType": "literal", "value": TEXT}
                   | {"jobInputType": "uri_folder" | "uri_file" | "mltable"
                                      | "custom_model" | "mlflow_model" | "triton_model",
                      "uri": "file:///ABS" | "/ABS", "mode": ... (ignored)}}
        a literal is its text (a JSON number is accepted too); a URI input is its local
        path, which must exist when the job starts.
    "outputs": {NAME: {"jobOutputType": one of the URI types above,
                       "uri": "file:///ABS" (optional)}}
        the path RUN/outputs/NAME unless a file:// uri is given; it is stored back as
        ``uri`` so the job document says where the output is. A folder is created for
        it, except for uri_file, whose parent folder is created.
    "command": "... ${{inputs.NAME}} ... ${{outputs.NAME}} ..."
        references replaced by the values above as raw text (no shell quoting, as in
        Azure ML). Any other ${{...}} expression, or a name the job does not have, is
        refused.
    "environmentVariables": {NAME: TEXT}

The process gets the workspace's own environment, then ``environmentVariables``, then
``AZUREML_RUN_ID``, ``AZUREML_EXPERIMENT_NAME``, ``AZURE_ML_INPUT_<NAME>`` and
``AZURE_ML_OUTPUT_<NAME>`` (the substituted values). ``environmentId`` and ``computeId``
are accepted and ignored: the command runs with this machine's tools.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from urllib.request import url2pathname

from amlwait.core.jobs import JobRef

RUNS_DIR = "runs"
CODE_DIR = "code"
OUTPUTS_DIR = "outputs"
COPY_IGNORED = ("__pycache__", ".git")

LITERAL = "literal"
URI_FILE = "uri_file"
URI_TYPES = frozenset(
    {"uri_folder", URI_FILE, "mltable", "custom_model", "mlflow_model", "triton_model"}
)

_INPUT_CHECKS: dict[str, tuple[Callable[[Path], bool], str]] = {
    "uri_folder": (Path.is_dir, "folder"),
    URI_FILE: (Path.is_file, "file"),
}
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_REFERENCE = re.compile(r"^(inputs|outputs)\.([A-Za-z0-9_]+)$")
_CODE_ASSET = re.compile(r"^/subscriptions/[^/]+/resourceGroups/.+/codes/", re.IGNORECASE)


class JobSetupError(Exception):
    """The job cannot run as its properties say; the message names what and why."""


@dataclass(frozen=True)
class OutputPlan:
    path: Path
    is_file: bool


@dataclass(frozen=True)
class RunPlan:
    """Everything about a run decided before it starts."""

    run_dir: Path
    command: str
    code_source: Path | None
    input_paths: Mapping[str, tuple[Path, str]] = field(default_factory=dict)
    outputs: Mapping[str, OutputPlan] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def cwd(self) -> Path:
        return self.run_dir / CODE_DIR if self.code_source is not None else self.run_dir


def runs_root(data_dir: Path) -> Path:
    """Where the runs of a workspace on ``data_dir`` live (absolute: commands ``cd``)."""
    return Path(data_dir).absolute() / RUNS_DIR


def run_directory(root: Path, ref: JobRef) -> Path:
    ws = ref.workspace
    parts = (ws.subscription, ws.resource_group, ws.workspace, ref.name)
    return root.joinpath(*(_safe_segment(p) for p in parts))


def plan_run(name: str, properties: Mapping[str, Any], run_dir: Path) -> RunPlan:
    """The run of job ``name`` in ``run_dir``, or :class:`JobSetupError`. No I/O, but for
    looking up a code version ``codeId`` names."""
    code_id = properties.get("codeId")
    code_source = None if code_id in (None, "") else _code_folder(code_id, run_dir)

    values: dict[str, str] = {}
    input_paths: dict[str, tuple[Path, str]] = {}
    for input_name, spec in _named_objects(properties, "inputs").items():
        kind = _kind(spec, f"inputs.{input_name}", "jobInputType", allow_literal=True)
        if kind == LITERAL:
            values[f"inputs.{input_name}"] = _literal(spec, input_name)
        else:
            path = _local_path(spec.get("uri"), f"properties.inputs.{input_name}.uri")
            values[f"inputs.{input_name}"] = str(path)
            input_paths[input_name] = (path, kind)

    outputs: dict[str, OutputPlan] = {}
    for output_name, spec in _named_objects(properties, "outputs").items():
        kind = _kind(spec, f"outputs.{output_name}", "jobOutputType", allow_literal=False)
        where = f"properties.outputs.{output_name}.uri"
        uri = spec.get("uri")
        if uri in (None, ""):
            path = run_dir / OUTPUTS_DIR / output_name
        elif isinstance(uri, str) and urlsplit(uri).scheme.lower() == "file":
            path = _local_path(uri, where)
        else:
            raise JobSetupError(
                f"{where} {uri!r} is not a file:// URI; the local workspace writes outputs "
                "to local folders: leave uri out (RUN/outputs/NAME) or give a file:// one."
            )
        outputs[output_name] = OutputPlan(path, is_file=kind == URI_FILE)
        values[f"outputs.{output_name}"] = str(path)

    command = _substitute(str(properties.get("command", "")), values)
    environment = {
        str(k): str(v) for k, v in (properties.get("environmentVariables") or {}).items()
    }
    environment["AZUREML_RUN_ID"] = name
    environment["AZUREML_EXPERIMENT_NAME"] = str(properties.get("experimentName") or "Default")
    for reference, value in values.items():
        group, _, item = reference.partition(".")
        prefix = "AZURE_ML_INPUT_" if group == "inputs" else "AZURE_ML_OUTPUT_"
        environment[prefix + item] = value
    return RunPlan(run_dir, command, code_source, input_paths, outputs, environment)


def with_output_uris(properties: Mapping[str, Any], plan: RunPlan) -> dict[str, Any]:
    """``properties`` with each output's ``uri`` set to the ``file://`` URI of its path."""
    updated = copy.deepcopy(dict(properties))
    outputs = updated.get("outputs") or {}
    for output_name, output in plan.outputs.items():
        outputs[output_name] = {**outputs.get(output_name, {}), "uri": output.path.as_uri()}
    updated["outputs"] = outputs
    return updated


def prepare_run(plan: RunPlan, *, keep_out: Path) -> None:
    """Copy the code, check the inputs, create the outputs' folders; or JobSetupError.

    ``keep_out`` (the workspace's data dir) is never copied, should the code folder
    hold it. A code copy left by an interrupted start is replaced.
    """
    for input_name, (path, kind) in plan.input_paths.items():
        exists, what = _INPUT_CHECKS.get(kind, (Path.exists, "path"))
        if not exists(path):
            raise JobSetupError(
                f"Input '{input_name}' ({kind}) points to {path}, which is not an existing {what}."
            )
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    if plan.code_source is not None:
        _copy_code(plan.code_source, plan.cwd, keep_out)
    for output_name, output in plan.outputs.items():
        folder = output.path.parent if output.is_file else output.path
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JobSetupError(
                f"Cannot create the folder {folder} for output '{output_name}': {exc}."
            ) from None


def _copy_code(source: Path, destination: Path, keep_out: Path) -> None:
    if not source.is_dir():
        problem = "is not a folder" if source.exists() else "does not exist"
        raise JobSetupError(
            f"The code folder {source} (properties.codeId) {problem}; the local workspace "
            "runs the command in a copy of it taken when the job starts."
        )
    excluded = keep_out.resolve()

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in COPY_IGNORED}
        skipped.update(n for n in names if (Path(folder) / n).resolve() == excluded)
        return skipped

    try:
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(source, destination, ignore=ignore, ignore_dangling_symlinks=True)
    except OSError as exc:
        raise JobSetupError(f"Cannot copy the code folder {source}: {exc}.") from None


def _code_folder(code_id: Any, run_dir: Path) -> Path:
    if not isinstance(code_id, str):
        raise JobSetupError("properties.codeId must be a string (a file:// URI of a folder).")
    from amlwait.workspace import assets  # a code version uploaded to this workspace

    if assets.is_code_version_id(code_id):
        try:  # run_dir is DATA_DIR/runs/{sub}/{rg}/{ws}/{name} (run_directory)
            return assets.uploaded_code_folder(code_id, run_dir.parents[4])
        except assets.CodeAssetError as exc:
            raise JobSetupError(str(exc)) from None
    if code_id.lower().startswith("azureml:") or _CODE_ASSET.match(code_id):
        raise JobSetupError(
            f"properties.codeId {code_id!r} is an Azure ML code asset, which the local "
            "workspace cannot fetch; give the code folder as a file:// URI "
            "(e.g. file:///path/to/src)."
        )
    return _local_path(code_id, "properties.codeId")


def _local_path(uri: Any, where: str) -> Path:
    """The absolute local path of a ``file://`` URI or an absolute path."""
    if not isinstance(uri, str) or not uri:
        raise JobSetupError(f"{where} is required: a file:// URI or an absolute path.")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file" and parts.netloc in ("", "localhost"):
        path = Path(url2pathname(parts.path))
    elif scheme == "" and uri.startswith("/"):
        path = Path(uri)
    else:
        raise JobSetupError(
            f"{where} {uri!r} is not a local path; the local workspace reads only file:// "
            "URIs and absolute paths on this machine."
        )
    if not path.is_absolute():
        raise JobSetupError(f"{where} {uri!r} is not an absolute path.")
    return path


def _named_objects(properties: Mapping[str, Any], bag: str) -> dict[str, Mapping[str, Any]]:
    found = properties.get(bag) or {}
    if not isinstance(found, Mapping):
        raise JobSetupError(f"properties.{bag} must be an object.")
    for key, value in found.items():
        if not _NAME.match(key):
            raise JobSetupError(
                f"properties.{bag} name {key!r} is not valid: use letters, digits and '_'."
            )
        if not isinstance(value, Mapping):
            raise JobSetupError(f"properties.{bag}.{key} must be an object.")
    return dict(found)


def _kind(spec: Mapping[str, Any], where: str, key: str, *, allow_literal: bool) -> str:
    allowed = sorted(URI_TYPES) if not allow_literal else [LITERAL, *sorted(URI_TYPES)]
    value = spec.get(key)
    kind = value.lower() if isinstance(value, str) else None
    if kind not in allowed:
        raise JobSetupError(
            f"properties.{where}.{key} {value!r} is not supported by the local workspace; "
            f"use one of {', '.join(allowed)}."
        )
    return kind


def _literal(spec: Mapping[str, Any], input_name: str) -> str:
    value = spec.get("value")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise JobSetupError(
        f"properties.inputs.{input_name}.value must be a string for a literal input."
    )


def _substitute(command: str, values: Mapping[str, str]) -> str:
    def replace(found: re.Match[str]) -> str:
        expression = found.group(1).strip()
        reference = _REFERENCE.match(expression)
        if reference is None:
            raise JobSetupError(
                f"properties.command uses {found.group(0)!r}; the local workspace substitutes "
                "only ${{inputs.NAME}} and ${{outputs.NAME}}."
            )
        if expression not in values:
            group, item = reference.groups()
            known = sorted(k.partition(".")[2] for k in values if k.startswith(group + "."))
            has = f"it has: {', '.join(known)}" if known else f"it has no {group}"
            raise JobSetupError(
                f"properties.command refers to {found.group(0)!r}, but the job has no "
                f"{group[:-1]} '{item}' ({has})."
            )
        return values[expression]

    return _EXPRESSION.sub(replace, command)


def _safe_segment(part: str) -> str:
    """A path segment that cannot climb out of the runs directory."""
    quoted = quote(part, safe="-_.~@+=,")
    return quoted.replace(".", "%2E") if set(quoted) <= {"."} else quoted
