"""An Azure ML command job YAML (as a mapping) → the ARM ``properties`` of a job PUT.

Plain ARM, no azure-ai-ml: this is the one place that knows both shapes, so a test can hold
it against azure-ai-ml's own conversion. What it produces::

    {"jobType": "Command",
     "command": str,
     "codeId": "file:///ABS/PATH"          # local code folder, relative to the YAML's folder
                                           #   (code_upload.py registers it before the PUT)
               | "azureml:…" | ARM id,     #   or an asset id, passed through
     "environmentId": "azureml:NAME@latest" | "azureml:NAME:VERSION" | "azureml://…" | ARM id,
     "computeId": "/subscriptions/…/workspaces/WS/computes/NAME",  # from azureml:NAME or NAME
     "inputs": {NAME: {"jobInputType": "literal", "value": str}
                    | {"jobInputType": "uri_folder"|"uri_file"|"mltable"|…,
                       "uri": "file:///ABS" | URI, "mode"?: "ReadOnlyMount"|…}},
     "outputs": {NAME: {"jobOutputType": "uri_folder"|…, "mode"?: …, "uri"?: …}},
     "environmentVariables": {str: str}, "experimentName", "displayName", "description",
     "tags": {str: str}, "properties": {str: str},
     "resources": {"instanceCount", "instanceType", "shmSize"},
     "limits": {"jobLimitsType": "Command", "timeout": "PT<seconds>S"}}

Keys the YAML leaves out are left out. An inline environment definition is refused: it
needs an image build that only azure-ai-ml (or ``az ml``) does; register the environment
and name it. Errors are :class:`JobSpecError`, carrying the key path at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from amlwait.core.jobs import WorkspaceRef
from amlwait.errors import InputError
from amlwait.submit.yamlsource import KeyPath

DATA_INPUT_TYPES = frozenset(
    {"uri_folder", "uri_file", "mltable", "custom_model", "mlflow_model", "triton_model"}
)
INPUT_MODES = {
    "ro_mount": "ReadOnlyMount",
    "rw_mount": "ReadWriteMount",
    "download": "Download",
    "direct": "Direct",
    "eval_mount": "EvalMount",
    "eval_download": "EvalDownload",
}
OUTPUT_MODES = {"rw_mount": "ReadWriteMount", "upload": "Upload", "direct": "Direct"}
_SIMPLE_FIELDS = {
    "experiment_name": "experimentName",
    "display_name": "displayName",
    "description": "description",
}
_STRING_MAPS = {"environment_variables": "environmentVariables", "tags": "tags"}
_IGNORED = frozenset({"$schema"})
SUPPORTED_KEYS = (
    "type",
    "command",
    "code",
    "environment",
    "compute",
    "inputs",
    "outputs",
    *_SIMPLE_FIELDS,
    *_STRING_MAPS,
    "properties",
    "resources",
    "limits",
)


class JobSpecError(InputError):
    """The job YAML cannot become ARM properties; ``path`` is the key at fault."""

    def __init__(self, path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.path = path


def command_job_properties(
    job: Mapping[str, Any], *, base_dir: Path, workspace: WorkspaceRef | None = None
) -> dict[str, Any]:
    """ARM ``properties`` for a command job. ``base_dir`` is the YAML file's folder (local
    paths are relative to it); with ``workspace``, a compute name becomes its ARM id."""
    for key in job:
        if key in _IGNORED:
            continue
        if key == "name":
            raise JobSpecError(
                ("name",), "amlwait submit names each job (--name-pattern); remove name"
            )
        if key not in SUPPORTED_KEYS:
            raise JobSpecError(
                (key,), f"not supported by amlwait submit; use {', '.join(SUPPORTED_KEYS)}"
            )
    kind = job.get("type", "command")
    if kind != "command":
        raise JobSpecError(("type",), f"{kind!r}: amlwait submit creates command jobs only")
    command = job.get("command")
    if not isinstance(command, str) or not command.strip():
        raise JobSpecError(("command",), "a command job needs a command (a string)")
    properties: dict[str, Any] = {"jobType": "Command", "command": command}
    if "code" in job:
        properties["codeId"] = _code_id(job["code"], base_dir)
    properties["environmentId"] = _environment_id(job.get("environment"))
    if job.get("compute") is not None:
        properties["computeId"] = _compute_id(job["compute"], workspace)
    if "inputs" in job:
        properties["inputs"] = {
            name: _input(name, value, base_dir)
            for name, value in _mapping(job["inputs"], ("inputs",)).items()
        }
    if "outputs" in job:
        properties["outputs"] = {
            name: _output(name, value)
            for name, value in _mapping(job["outputs"], ("outputs",)).items()
        }
    for key, arm_key in _STRING_MAPS.items():
        if key in job:
            properties[arm_key] = _string_map(job[key], (key,))
    for key, arm_key in _SIMPLE_FIELDS.items():
        if job.get(key) is not None:
            properties[arm_key] = _text(job[key], (key,))
    if "properties" in job:
        properties["properties"] = _string_map(job["properties"], ("properties",))
    if "resources" in job:
        properties["resources"] = _resources(job["resources"])
    if "limits" in job:
        properties["limits"] = _limits(job["limits"])
    return properties


def _has_scheme(text: str) -> bool:
    return "://" in text


def _is_asset_id(text: str) -> bool:
    return text.startswith(("azureml:", "/subscriptions/")) or _has_scheme(text)


def _local_uri(text: str, base_dir: Path, path: KeyPath, *, must_exist: bool) -> str:
    local = (base_dir / text).resolve()
    if must_exist and not local.exists():
        raise JobSpecError(path, f"{text!r} does not exist (looked in {base_dir.name}/)")
    return local.as_uri()


def _code_id(value: Any, base_dir: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise JobSpecError(("code",), "expected a local folder or an azureml: code asset")
    if _is_asset_id(value):
        return value
    return _local_uri(value, base_dir, ("code",), must_exist=True)


def _environment_id(value: Any) -> str:
    if value is None:
        raise JobSpecError(
            ("environment",), "a command job needs an environment (azureml:NAME:VERSION)"
        )
    if isinstance(value, dict):
        raise JobSpecError(
            ("environment",),
            "an inline environment needs an image build that amlwait submit does not do; "
            "register it (az ml environment create) and write azureml:NAME:VERSION or "
            "azureml:NAME@latest",
        )
    if not isinstance(value, str) or not _is_asset_id(value):
        raise JobSpecError(
            ("environment",),
            f"{value!r}: expected a registered environment: azureml:NAME:VERSION, "
            "azureml:NAME@latest or an ARM id",
        )
    return value


def _compute_id(value: Any, workspace: WorkspaceRef | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise JobSpecError(("compute",), "expected a compute name (azureml:NAME)")
    if value.startswith("/subscriptions/"):
        return value
    name = value.removeprefix("azureml:")
    if not name or "/" in name or ":" in name:
        raise JobSpecError(("compute",), f"{value!r}: expected azureml:NAME or an ARM id")
    # ARM wants the compute's resource id; azure-ai-ml resolves the name the same way.
    return f"{workspace.arm_path}/computes/{name}" if workspace is not None else name


def _mapping(value: Any, path: KeyPath) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise JobSpecError(path, "expected a mapping")
    return value


def _text(value: Any, path: KeyPath) -> str:
    if isinstance(value, bool | int | float | str):
        return str(value)
    raise JobSpecError(path, "expected a string")


def _string_map(value: Any, path: KeyPath) -> dict[str, str]:
    return {key: _text(item, (*path, key)) for key, item in _mapping(value, path).items()}


def _mode(value: Any, modes: Mapping[str, str], path: KeyPath) -> str:
    if value not in modes:
        raise JobSpecError(path, f"{value!r}: use one of {', '.join(modes)}")
    return modes[value]


def _input(name: str, value: Any, base_dir: Path) -> dict[str, Any]:
    path: KeyPath = ("inputs", name)
    if isinstance(value, bool | int | float | str):
        return {"jobInputType": "literal", "value": str(value)}
    if not isinstance(value, dict):
        raise JobSpecError(path, "expected a literal value or {type, path, mode?}")
    _only_keys(value, path, ("type", "path", "mode", "description"))
    kind = value.get("type")
    if kind not in DATA_INPUT_TYPES:
        raise JobSpecError(
            (*path, "type"), f"{kind!r}: use one of {', '.join(sorted(DATA_INPUT_TYPES))}"
        )
    where = value.get("path")
    if not isinstance(where, str) or not where.strip():
        raise JobSpecError((*path, "path"), "a data input needs a path (local or a URI)")
    uri = (
        where
        if _is_asset_id(where)
        else _local_uri(where, base_dir, (*path, "path"), must_exist=False)
    )
    result: dict[str, Any] = {"jobInputType": kind, "uri": uri}
    if "mode" in value:
        result["mode"] = _mode(value["mode"], INPUT_MODES, (*path, "mode"))
    if "description" in value:
        result["description"] = _text(value["description"], (*path, "description"))
    return result


def _output(name: str, value: Any) -> dict[str, Any]:
    path: KeyPath = ("outputs", name)
    value = _mapping(value, path)
    _only_keys(value, path, ("type", "path", "mode", "name", "version", "description"))
    kind = value.get("type", "uri_folder")
    if kind not in DATA_INPUT_TYPES:
        raise JobSpecError(
            (*path, "type"), f"{kind!r}: use one of {', '.join(sorted(DATA_INPUT_TYPES))}"
        )
    result: dict[str, Any] = {"jobOutputType": kind}
    if "path" in value:
        result["uri"] = _text(value["path"], (*path, "path"))
    if "mode" in value:
        result["mode"] = _mode(value["mode"], OUTPUT_MODES, (*path, "mode"))
    for key, arm_key in (("name", "assetName"), ("version", "assetVersion")):
        if key in value:
            result[arm_key] = _text(value[key], (*path, key))
    if "description" in value:
        result["description"] = _text(value["description"], (*path, "description"))
    return result


def _resources(value: Any) -> dict[str, Any]:
    path: KeyPath = ("resources",)
    value = _mapping(value, path)
    _only_keys(value, path, ("instance_count", "instance_type", "shm_size"))
    result: dict[str, Any] = {}
    count = value.get("instance_count")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise JobSpecError((*path, "instance_count"), "expected a whole number ≥ 1")
        result["instanceCount"] = count
    for key, arm_key in (("instance_type", "instanceType"), ("shm_size", "shmSize")):
        if value.get(key) is not None:
            result[arm_key] = _text(value[key], (*path, key))
    return result


def _limits(value: Any) -> dict[str, Any]:
    path: KeyPath = ("limits",)
    value = _mapping(value, path)
    _only_keys(value, path, ("timeout",))
    result: dict[str, Any] = {"jobLimitsType": "Command"}
    timeout = value.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise JobSpecError((*path, "timeout"), "expected whole seconds ≥ 1")
        result["timeout"] = f"PT{timeout}S"
    return result


def _only_keys(value: Mapping[str, Any], path: KeyPath, allowed: tuple[str, ...]) -> None:
    for key in value:
        if key not in allowed:
            raise JobSpecError((*path, key), f"unknown key; use {', '.join(allowed)}")
