"""Pipeline jobs and component versions in the local workspace: what a PUT may send, what
a GET answers, and how a pipeline's steps become the command jobs that really run.

**Component versions** (``WS/components/{name}/versions/{version}``, the spec's
``ComponentVersionResource``, 2024-04-01 ``mfe.json``)::

    PUT  {"properties": {"componentSpec": {"type": "command", "command": TEXT,
                                           "environment": TEXT, "code": ID?,
                                           "inputs": {...}?, ...},
                         "description"?, "tags"?, "properties"?, "isAnonymous"?,
                         "isArchived"?}}
    GET  {"id", "name": VERSION, "type": COMPONENT_VERSION_TYPE,
          "properties": {<what was PUT>, "provisioningState": "Succeeded"}, "systemData"}

A PUT to an existing version with a different ``componentSpec`` is refused (400), as
Azure refuses to change an asset version; the same spec again is 200.

**Pipeline jobs** (the spec's ``PipelineJob``): ``jobType: Pipeline``, ``jobs`` = node name →
node, ``settings`` (``continue_on_step_failure``, as azure-ai-ml sends it; ``false`` when
absent). Each node is, as azure-ai-ml's ``PipelineJob._to_rest_object`` writes it::

    {"type": "command", "componentId": "[azureml:]WS/components/NAME/versions/V",
     "name"?, "display_name"?, "tags"?, "environment_variables"?, "computeId"?,
     "inputs"?: {NAME: {"job_input_type": "literal", "value": TEXT}   # or jobInputType
                       | {"job_input_type": "uri_folder"…, "uri": …}}}

and becomes one child job (:func:`child_properties`), a ``CommandJob`` whose ``command``,
``environmentId`` and ``codeId`` come from the component, and the rest from the node and the
pipeline (``computeId`` from the node, else the pipeline; ``experimentName`` the
pipeline's). The child's ``displayName`` is the node's ``display_name``, else its name; its
``properties`` bag carries ``azureml.nodeid`` (the node name) as Azure ML's step runs do.
A node of another type, one naming an unknown component version, or one binding its inputs
to the pipeline's (``${{parent.…}}``) is refused with a 400 naming the node.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from amlwait.core.jobs import WorkspaceRef
from amlwait.core.pipeline import PIPELINE_JOB_TYPE, is_valid_node_name
from amlwait.workspace.document import iso8601
from amlwait.workspace.errors import ArmError

COMPONENT_VERSION_TYPE = "Microsoft.MachineLearningServices/workspaces/components/versions"
NODE_ID_PROPERTY = "azureml.nodeid"
CONTINUE_ON_STEP_FAILURE = "continue_on_step_failure"
_COMPONENT_WRITABLE = frozenset(
    {"componentSpec", "description", "properties", "tags", "isAnonymous", "isArchived"}
)
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_.]{0,254}$")
_COMPONENT_ID = re.compile(
    r"^(?:azureml:)?/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
    r"/components/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/?$",
    re.IGNORECASE,
)
_NODE_FIELDS = frozenset(
    {
        "type",
        "componentId",
        "name",
        "display_name",
        "displayName",
        "tags",
        "environment_variables",
        "computeId",
        "compute",
        "inputs",
        "outputs",
        "properties",
        "resources",
        "limits",
        "description",
        "_source",
    }
)


def _bad(message: str) -> ArmError:
    return ArmError(400, "UserError", message)


# -- component versions -------------------------------------------------------------------


def check_asset_name(name: str, what: str) -> None:
    if not _ASSET_NAME.match(name):
        raise _bad(
            f"'{name}' is not a valid component {what}: use 1 to 255 letters, digits, "
            "'-', '_' or '.', starting with a letter or digit."
        )


def parse_component_body(raw: bytes) -> dict[str, Any]:
    """The validated ``properties`` of a component version PUT, or a 400 :class:`ArmError`."""
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArmError(
            400, "InvalidRequestContent", f"The request body is not valid JSON: {exc}."
        ) from None
    properties = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(properties, dict):
        raise _bad("The request body must have a 'properties' object.")
    unknown = sorted(set(properties) - _COMPONENT_WRITABLE - {"provisioningState"})
    if unknown:
        raise _bad(f"properties.{unknown[0]} is not a field of a component version.")
    spec = properties.get("componentSpec")
    if not isinstance(spec, dict):
        raise _bad("properties.componentSpec is required: the component's definition.")
    if str(spec.get("type", "")).lower() != "command":
        raise _bad(
            f"properties.componentSpec.type {spec.get('type')!r} is not supported by the "
            "local workspace; use 'command'."
        )
    for key in ("command", "environment"):
        value = spec.get(key)
        if not isinstance(value, str) or not value.strip():
            raise _bad(f"properties.componentSpec.{key} is required for a command component.")
    for bag in ("tags", "properties"):
        value = properties.get(bag)
        if value is not None and not (
            isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        ):
            raise _bad(f"properties.{bag} must be an object of string values.")
    return {k: v for k, v in properties.items() if k != "provisioningState"}


def component_document(
    workspace: WorkspaceRef,
    name: str,
    version: str,
    properties: Mapping[str, Any],
    created_at: float,
    modified_at: float,
) -> dict[str, Any]:
    """The ``ComponentVersionResource`` a GET or PUT answers."""
    shown = copy.deepcopy(dict(properties))
    shown.setdefault("description", None)
    shown.setdefault("tags", {})
    shown.setdefault("properties", {})
    shown.setdefault("isAnonymous", False)
    shown.setdefault("isArchived", False)
    shown["provisioningState"] = "Succeeded"
    return {
        "id": component_version_id(workspace, name, version),
        "name": version,
        "type": COMPONENT_VERSION_TYPE,
        "properties": shown,
        "systemData": {
            "createdAt": iso8601(created_at),
            "createdBy": "amlwait local workspace",
            "createdByType": "User",
            "lastModifiedAt": iso8601(modified_at),
            "lastModifiedBy": "amlwait local workspace",
            "lastModifiedByType": "User",
        },
    }


def component_version_id(workspace: WorkspaceRef, name: str, version: str) -> str:
    return f"{workspace.arm_path}/components/{name}/versions/{version}"


def parse_component_id(component_id: Any, where: str) -> tuple[WorkspaceRef, str, str]:
    """The workspace, name and version a node's ``componentId`` names, or a 400."""
    found = _COMPONENT_ID.match(component_id) if isinstance(component_id, str) else None
    if found is None:
        raise _bad(
            f"{where}.componentId {component_id!r} is not a component version's ARM id "
            "(…/workspaces/WS/components/NAME/versions/VERSION); register the component "
            "first."
        )
    return (
        WorkspaceRef(found["sub"], found["rg"], found["ws"]),
        found["name"],
        found["version"],
    )


# -- pipeline jobs ------------------------------------------------------------------------


def is_pipeline(properties: Mapping[str, Any]) -> bool:
    return properties.get("jobType") == PIPELINE_JOB_TYPE


def check_pipeline_properties(properties: Mapping[str, Any]) -> None:
    """Refuse (400) a PipelineJob body the local workspace cannot run; the node-by-node
    checks that need the components are in :func:`child_properties`."""
    jobs = properties.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        raise _bad("properties.jobs must name at least one step: {node name: node}.")
    for node_name, node in jobs.items():
        where = f"properties.jobs.{node_name}"
        if not is_valid_node_name(node_name):
            raise _bad(
                f"{where}: '{node_name}' is not a valid node name; use lower-case letters, "
                "digits and '_', not starting with a digit."
            )
        if not isinstance(node, dict):
            raise _bad(f"{where} must be an object.")
        if str(node.get("type", "")).lower() != "command":
            raise _bad(
                f"{where}.type {node.get('type')!r} is not supported by the local workspace; "
                "use 'command'."
            )
        unknown = sorted(set(node) - _NODE_FIELDS)
        if unknown:
            raise _bad(f"{where}.{unknown[0]} is not supported by the local workspace.")
        parse_component_id(node.get("componentId"), where)
        for bag in ("tags", "environment_variables", "properties"):
            value = node.get(bag)
            if value is not None and not (
                isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
            ):
                raise _bad(f"{where}.{bag} must be an object of string values.")
        inputs = node.get("inputs")
        if inputs is not None and not isinstance(inputs, dict):
            raise _bad(f"{where}.inputs must be an object.")
    settings = properties.get("settings")
    if settings is not None and not isinstance(settings, dict):
        raise _bad("properties.settings must be an object.")
    flag = (settings or {}).get(CONTINUE_ON_STEP_FAILURE)
    if flag is not None and not isinstance(flag, bool):
        raise _bad(f"properties.settings.{CONTINUE_ON_STEP_FAILURE} must be true or false.")


def continue_on_step_failure(properties: Mapping[str, Any]) -> bool:
    settings = properties.get("settings") or {}
    return bool(settings.get(CONTINUE_ON_STEP_FAILURE, False))


def child_properties(
    node_name: str,
    node: Mapping[str, Any],
    component: Mapping[str, Any],
    pipeline: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``CommandJob`` properties of the child that runs ``node`` (see the module
    docstring), from the component version's stored properties."""
    where = f"properties.jobs.{node_name}"
    spec = component.get("componentSpec") or {}
    child: dict[str, Any] = {
        "jobType": "Command",
        "command": spec["command"],
        "environmentId": _asset_reference(spec["environment"]),
        "experimentName": pipeline.get("experimentName") or "Default",
        "displayName": node.get("display_name") or node.get("displayName") or node_name,
        "tags": dict(node.get("tags") or {}),
        "properties": {**dict(node.get("properties") or {}), NODE_ID_PROPERTY: node_name},
        "environmentVariables": {
            **{str(k): str(v) for k, v in (spec.get("environment_variables") or {}).items()},
            **dict(node.get("environment_variables") or {}),
        },
        "inputs": _child_io(node.get("inputs") or {}, where, "inputs"),
        "outputs": _child_io(node.get("outputs") or {}, where, "outputs"),
        "componentId": _asset_reference(str(node["componentId"])),
    }
    code = spec.get("code")
    if isinstance(code, str) and code:
        child["codeId"] = _asset_reference(code)
    compute = node.get("computeId") or node.get("compute") or pipeline.get("computeId")
    if isinstance(compute, str) and compute:
        child["computeId"] = compute
    return child


def _child_io(items: Mapping[str, Any], where: str, bag: str) -> dict[str, Any]:
    """A node's inputs or outputs as a command job's (``job_input_type`` →
    ``jobInputType``, ``job_output_type`` → ``jobOutputType``)."""
    camel, snake = (
        ("jobInputType", "job_input_type")
        if bag == "inputs"
        else ("jobOutputType", "job_output_type")
    )
    converted: dict[str, Any] = {}
    for item_name, spec in items.items():
        if not isinstance(spec, Mapping):
            raise _bad(f"{where}.{bag}.{item_name} must be an object.")
        for value in (spec.get("value"), spec.get("uri")):
            if isinstance(value, str) and "${{parent." in value:
                raise _bad(
                    f"{where}.{bag}.{item_name} binds to the pipeline's {bag}, which the "
                    "local workspace does not support; give the value itself."
                )
        item = {k: v for k, v in spec.items() if k not in (camel, snake)}
        item[camel] = spec.get(camel, spec.get(snake))
        converted[item_name] = item
    return converted


def _asset_reference(reference: str) -> str:
    """An ARM id as a job names it (``azureml:/subscriptions/…`` → ``/subscriptions/…``);
    any other reference (``azureml:env:1``, ``file:///…``) unchanged."""
    if reference.lower().startswith("azureml:/subscriptions/"):
        return reference[len("azureml:") :]
    return reference
