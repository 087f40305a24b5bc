"""Where Azure ML keeps why a job failed and when it really ran: the workspace resource, its
discovery document, run history and the MLflow tracking subset (shapes in docs/workspace.md).

- :func:`workspace_document`: ``GET WS`` as the spec's ``Workspace``;
  ``properties.discoveryUrl`` = ``BASE/discovery``, ``properties.mlFlowTrackingUri`` =
  ``BASE/mlflow/v1.0{WS}`` (an http(s) URL the MLflow client uses as is; Azure's is an
  ``azureml://`` URI that needs the azureml-mlflow plugin).
- :func:`discovery_document`: ``{"api", "catalog", "experimentation", "gallery", "history",
  "hyperdrive", "labeling", "modelmanagement", "pipelines": BASE, "studio": STUDIO}``.
- :class:`RunApi`: run history ``runs/{id}``, ``runs/{id}/children`` (a pipeline's steps)
  and ``runs/{id}/details`` (``runId``,
  ``status``, ``createdTimeUtc``, ``startTimeUtc``, ``endTimeUtc``, ``error: {"error":
  {"code", "message"}}``, ``tags``, ``properties``) and MLflow ``runs/get``,
  ``runs/search``, ``experiments/get``, ``experiments/get-by-name``.

A job's run id is its name. A pipeline step's run carries ``parentRunId``/``rootRunId``
(run history) and the ``mlflow.parentRunId`` tag (MLflow; ``tags.mlflow.parentRunId = 'P'``
finds a pipeline's steps). An experiment's id is a UUID derived from the workspace and the
experiment name (stable across restarts). MLflow statuses follow Azure ML's documented
mapping: NotStarted/Queued/Preparing → SCHEDULED, Running → RUNNING, Completed → FINISHED,
Failed → FAILED, Canceled → KILLED; the statuses the table leaves out are mapped as the
nearest (Starting/Provisioning → SCHEDULED; Finalizing, CancelRequested, NotResponding,
Paused, Unknown → RUNNING). Times are epoch milliseconds in MLflow, ISO-8601 UTC in run
history.

``runs/search`` ``filter``: conditions joined by ``AND`` (no ``OR``), each one of
``tags.KEY = 'v'`` (also ``tags."KEY"`` and ``!=``), ``attributes.run_id IN ('a', 'b')``
(also ``run_id``/``attributes.run_id = 'a'``) and ``attributes.status = 'FAILED'``. Filters
on ``start_time``/``end_time`` are refused (400 INVALID_PARAMETER_VALUE), as Azure ML
documents them unsupported. ``order_by``: ``start_time``/``end_time``/``run_name``/
``status``, ``ASC``/``DESC`` (default ``start_time DESC``). ``max_results`` (default 1000,
at most 50000) and ``page_token`` (an offset) page through the result.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from amlwait.core.jobs import JobRef, WorkspaceRef, is_valid_job_name
from amlwait.core.status import JobStatus
from amlwait.workspace.backend import Backend, ListQuery, ListView
from amlwait.workspace.document import JobView, iso8601
from amlwait.workspace.errors import ArmError
from amlwait.workspace.workspaces import WORKSPACE_TYPE

STUDIO_URL = "https://ml.azure.com"
PARENT_RUN_TAG = "mlflow.parentRunId"
"""The MLflow tag naming a pipeline step's parent run (MLflow's own system tag)."""
DISCOVERY_KEYS = (
    "api",
    "catalog",
    "experimentation",
    "gallery",
    "history",
    "hyperdrive",
    "labeling",
    "modelmanagement",
    "pipelines",
)
MAX_SEARCH_RESULTS = 50_000
DEFAULT_SEARCH_RESULTS = 1_000
_SCAN_PAGE = 1_000
_SCAN_LIMIT = 200_000  # jobs read for one search at most: a bound, not a feature

_MLFLOW_STATUS = {
    JobStatus.NOT_STARTED.value: "SCHEDULED",
    JobStatus.QUEUED.value: "SCHEDULED",
    JobStatus.PREPARING.value: "SCHEDULED",
    JobStatus.STARTING.value: "SCHEDULED",
    JobStatus.PROVISIONING.value: "SCHEDULED",
    JobStatus.RUNNING.value: "RUNNING",
    JobStatus.COMPLETED.value: "FINISHED",
    JobStatus.FAILED.value: "FAILED",
    JobStatus.CANCELED.value: "KILLED",
}


def mlflow_status(status: str) -> str:
    return _MLFLOW_STATUS.get(status, "RUNNING")


def workspace_document(ref: WorkspaceRef, base_url: str) -> dict[str, Any]:
    workspace_id = str(uuid.uuid5(uuid.NAMESPACE_URL, ref.arm_path.lower()))
    return {
        "id": ref.arm_path,
        "name": ref.workspace,
        "type": WORKSPACE_TYPE,
        "location": "local",
        "kind": "Default",
        "tags": {},
        "properties": {
            "workspaceId": workspace_id,
            "friendlyName": ref.workspace,
            "discoveryUrl": f"{base_url}/discovery",
            "mlFlowTrackingUri": f"{base_url}/mlflow/v1.0{ref.arm_path}",
            "provisioningState": "Succeeded",
            "hbiWorkspace": False,
            "v1LegacyMode": False,
            "publicNetworkAccess": "Disabled",
        },
    }


def discovery_document(base_url: str) -> dict[str, str]:
    document = {key: base_url for key in DISCOVERY_KEYS}
    document["studio"] = STUDIO_URL
    return document


def experiment_id(workspace: WorkspaceRef, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{workspace.arm_path.lower()}/experiments/{name}"))


def experiment_name(view: JobView) -> str:
    return str(view.properties.get("experimentName") or "Default")


def mlflow_error(error: ArmError) -> Response:
    """An :class:`ArmError` as MLflow's REST error body (``error_code`` + ``message``)."""
    codes = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}
    code = codes.get(
        error.status_code,
        "RESOURCE_DOES_NOT_EXIST" if error.status_code == 404 else "INTERNAL_ERROR",
    )
    return JSONResponse(
        {"error_code": code, "message": f"{error.code}: {error.message}"},
        status_code=error.status_code,
        headers=error.headers,
    )


def _ms(timestamp: float | None) -> int | None:
    return None if timestamp is None else round(timestamp * 1000)


def _utc(timestamp: float | None) -> str | None:
    return None if timestamp is None else iso8601(timestamp)


def history_run(view: JobView, *, details: bool) -> dict[str, Any]:
    """Run history's ``Run`` (``details=False``) or ``RunDetails`` for a job."""
    body: dict[str, Any] = {
        "runId": view.ref.name,
        "status": view.status,
        "startTimeUtc": _utc(view.started_at),
        "endTimeUtc": _utc(view.ended_at),
        "tags": dict(view.tags),
        "properties": dict(view.properties.get("properties") or {}),
    }
    if details:
        body["createdTimeUtc"] = _utc(view.created_at)
    else:
        body["createdUtc"] = _utc(view.created_at)
        body["experimentId"] = experiment_id(view.ref.workspace, experiment_name(view))
        body["displayName"] = view.properties.get("displayName") or view.ref.name
        body["name"] = view.ref.name
    if view.parent is not None:
        body["parentRunId"] = view.parent
        body["rootRunId"] = view.parent
    else:
        body["rootRunId"] = view.ref.name
    if view.error is not None:
        body["error"] = {"error": {"code": view.error_code or "UserError", "message": view.error}}
    return body


def mlflow_run(view: JobView) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_id": view.ref.name,
        "run_uuid": view.ref.name,
        "run_name": str(view.properties.get("displayName") or view.ref.name),
        "experiment_id": experiment_id(view.ref.workspace, experiment_name(view)),
        "user_id": "",
        "status": mlflow_status(view.status),
        "lifecycle_stage": "active",
        "artifact_uri": "",
    }
    for key, value in (("start_time", _ms(view.started_at)), ("end_time", _ms(view.ended_at))):
        if value is not None:
            info[key] = value
    tags = [{"key": k, "value": v} for k, v in view.tags.items()]
    tags.append({"key": "mlflow.runName", "value": info["run_name"]})
    if view.parent is not None:
        tags.append({"key": PARENT_RUN_TAG, "value": view.parent})
    return {"info": info, "data": {"metrics": [], "params": [], "tags": tags}}


# -- the search filter ------------------------------------------------------------------

_CONDITION = re.compile(
    r"""\s*(?P<key>(?:(?:tags|tag|attributes|attribute|attr|run)\.)?(?:"[^"]+"|`[^`]+`|[\w.]+))
        \s*(?P<op>!=|>=|<=|=|>|<|(?i:\bIN\b))\s*
        (?P<value>'[^']*'|"[^"]*"|-?\d+(?:\.\d+)?|\((?:\s*(?:'[^']*'|"[^"]*")\s*,?)*\))\s*""",
    re.VERBOSE,
)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
_STRING = re.compile(r"""'([^']*)'|"([^"]*)\"""")


def _bad_filter(message: str) -> ArmError:
    return ArmError(400, "InvalidFilter", message)


def parse_filter(text: str) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """``(kind, key, op, values)`` per condition; kind is ``tag`` or ``attribute``."""
    conditions: list[tuple[str, str, str, tuple[str, ...]]] = []
    if not text.strip():
        return conditions
    for part in _AND.split(text.strip()):
        found = _CONDITION.fullmatch(part)
        if found is None:
            raise _bad_filter(f"cannot parse the filter condition {part.strip()!r}")
        raw_key, op = found.group("key"), found.group("op").upper()
        prefix, _, name = raw_key.partition(".") if "." in raw_key else ("attributes", "", raw_key)
        if prefix not in ("tags", "tag", "attributes", "attribute", "attr", "run"):
            prefix, name = "attributes", raw_key
        name = name.strip('"`')
        values = tuple(single or double for single, double in _STRING.findall(found.group("value")))
        kind = "tag" if prefix.startswith("tag") else "attribute"
        if kind == "attribute":
            if name in ("start_time", "end_time", "created", "creation_time"):
                raise _bad_filter(
                    f"filtering on {name} is not supported by Azure Machine Learning; "
                    "filter on the runs' times after reading them"
                )
            if name not in ("run_id", "status", "run_name"):
                raise _bad_filter(f"the attribute {name!r} cannot be filtered on")
        if op == "IN" and (kind == "tag" or name != "run_id"):
            raise _bad_filter("IN is supported for attributes.run_id only")
        if op not in ("=", "!=", "IN") or not values:
            raise _bad_filter(f"{name} {op} …: compare tags and attributes with = or != 'text'")
        conditions.append((kind, name, op, values))
    return conditions


def _matches(view: JobView, conditions: list[tuple[str, str, str, tuple[str, ...]]]) -> bool:
    for kind, name, op, values in conditions:
        if kind == "tag" and name == PARENT_RUN_TAG:
            actual: str | None = view.parent
        elif kind == "tag":
            actual = view.tags.get(name)
        elif name == "run_id":
            actual = view.ref.name
        elif name == "status":
            actual = mlflow_status(view.status)
        else:
            actual = str(view.properties.get("displayName") or view.ref.name)
        if op == "IN":
            ok = actual in values
        elif op == "=":
            ok = actual is not None and actual == values[0]
        else:
            ok = actual is not None and actual != values[0]
        if not ok:
            return False
    return True


_ORDER = re.compile(
    r"\s*(?:attributes?\.)?(?P<field>start_time|end_time|run_name|status)"
    r"(?:\s+(?P<direction>ASC|DESC))?\s*\Z",
    re.IGNORECASE,
)


def _sort_key(view: JobView, field: str) -> tuple[int, Any]:
    value: Any
    if field == "start_time":
        value = view.started_at if view.started_at is not None else view.created_at
    elif field == "end_time":
        value = view.ended_at
    elif field == "run_name":
        value = str(view.properties.get("displayName") or view.ref.name)
    else:
        value = mlflow_status(view.status)
    return (0 if value is None else 1, value if value is not None else 0)


class RunApi:
    """The run history and MLflow handlers over a :class:`~.backend.Backend`."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _view(self, params: Mapping[str, str], name: str | None) -> JobView:
        if not name or not is_valid_job_name(name):
            raise ArmError(404, "NotFound", f"Run {name!r} was not found.")
        workspace = WorkspaceRef(params["sub"], params["rg"], params["ws"])
        view = self.backend.get_job(JobRef(workspace, name))
        if view is None:
            raise ArmError(404, "NotFound", f"Run '{name}' was not found.")
        return view

    def _all(self, workspace: WorkspaceRef) -> Iterator[JobView]:
        token: str | None = None
        seen = 0
        while seen < _SCAN_LIMIT:
            page = self.backend.list_jobs(
                workspace,
                ListQuery(
                    view=ListView.ALL,
                    skip_token=token,
                    page_size=_SCAN_PAGE,
                    include_children=True,
                ),
            )
            yield from page.jobs
            seen += len(page.jobs)
            token = page.next_skip_token
            if token is None:
                return

    def _candidates(
        self, workspace: WorkspaceRef, conditions: list[tuple[str, str, str, tuple[str, ...]]]
    ) -> Iterator[JobView]:
        """The runs a search must look at: with a ``run_id =``/``IN`` condition only the
        runs it names (looked up by name, as a store finds a run by its key), otherwise
        every run. The answer is the same either way; the lookup keeps a search for 500
        ids from reading all of a 10,000-run workspace."""
        named = [
            values
            for kind, name, op, values in conditions
            if kind == "attribute" and name == "run_id" and op in ("=", "IN")
        ]
        if not named:
            yield from self._all(workspace)
            return
        for run in sorted(set(named[0])):
            if is_valid_job_name(run):
                view = self.backend.get_job(JobRef(workspace, run))
                if view is not None:
                    yield view

    async def history_run(self, request: Request, params: Mapping[str, str]) -> Response:
        return JSONResponse(history_run(self._view(params, params["name"]), details=False))

    async def history_children(self, request: Request, params: Mapping[str, str]) -> Response:
        """``GET …/runs/{id}/children``: run history's ``PaginatedRunList`` of a pipeline's
        steps (one page, creation order; ``$top`` caps it), as azure-ai-ml's
        ``jobs.list(parent_job_name=…)`` reads it. An unknown run is a 404."""
        parent = self._view(params, params["name"])
        top = _int(request.query_params.get("$top"), _SCAN_LIMIT, "$top")
        children = [
            history_run(view, details=False)
            for view in self._all(parent.ref.workspace)
            if view.parent == parent.ref.name
        ]
        return JSONResponse(
            {"value": children[: max(top, 0)], "continuationToken": None, "nextLink": None}
        )

    async def history_details(self, request: Request, params: Mapping[str, str]) -> Response:
        return JSONResponse(history_run(self._view(params, params["name"]), details=True))

    async def mlflow_get_run(self, request: Request, params: Mapping[str, str]) -> Response:
        name = request.query_params.get("run_id") or request.query_params.get("run_uuid")
        return JSONResponse({"run": mlflow_run(self._view(params, name))})

    async def mlflow_experiment_by_name(
        self, request: Request, params: Mapping[str, str]
    ) -> Response:
        name = request.query_params.get("experiment_name") or ""
        workspace = WorkspaceRef(params["sub"], params["rg"], params["ws"])
        if not any(experiment_name(v) == name for v in self._all(workspace)):
            raise ArmError(404, "NotFound", f"Experiment '{name}' does not exist.")
        return JSONResponse({"experiment": self._experiment(workspace, name)})

    async def mlflow_experiment(self, request: Request, params: Mapping[str, str]) -> Response:
        wanted = request.query_params.get("experiment_id") or ""
        workspace = WorkspaceRef(params["sub"], params["rg"], params["ws"])
        for view in self._all(workspace):
            name = experiment_name(view)
            if experiment_id(workspace, name) == wanted:
                return JSONResponse({"experiment": self._experiment(workspace, name)})
        raise ArmError(404, "NotFound", f"Experiment with id '{wanted}' does not exist.")

    def _experiment(self, workspace: WorkspaceRef, name: str) -> dict[str, Any]:
        return {
            "experiment_id": experiment_id(workspace, name),
            "name": name,
            "artifact_location": "",
            "lifecycle_stage": "active",
            "tags": [],
        }

    async def mlflow_search_runs(self, request: Request, params: Mapping[str, str]) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ArmError(400, "InvalidRequestContent", "The body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The body must be a JSON object.")
        workspace = WorkspaceRef(params["sub"], params["rg"], params["ws"])
        experiments = body.get("experiment_ids") or []
        if not isinstance(experiments, list) or not experiments:
            raise ArmError(400, "InvalidParameterValue", "experiment_ids must list experiments.")
        wanted = {str(e) for e in experiments}
        conditions = parse_filter(str(body.get("filter") or ""))
        limit = _int(body.get("max_results"), DEFAULT_SEARCH_RESULTS, "max_results")
        if not 1 <= limit <= MAX_SEARCH_RESULTS:
            raise ArmError(
                400,
                "InvalidParameterValue",
                f"max_results must be between 1 and {MAX_SEARCH_RESULTS}, not {limit}.",
            )
        offset = _int(body.get("page_token") or 0, 0, "page_token")
        runs = [
            view
            for view in self._candidates(workspace, conditions)
            if experiment_id(workspace, experiment_name(view)) in wanted
            and _matches(view, conditions)
        ]
        orders = body.get("order_by") or ["start_time DESC"]
        if not isinstance(orders, list):
            raise ArmError(400, "InvalidParameterValue", "order_by must be a list.")
        runs.sort(key=lambda v: v.ref.name)
        for order in reversed(orders):
            found = _ORDER.match(str(order))
            if found is None:
                raise ArmError(
                    400,
                    "InvalidParameterValue",
                    f"order_by {order!r}: the local workspace orders by start_time, "
                    "end_time, run_name or status",
                )
            field = found.group("field").lower()
            descending = (found.group("direction") or "ASC").upper() == "DESC"
            runs.sort(key=functools.partial(_sort_key, field=field), reverse=descending)
        page = runs[offset : offset + limit]
        answer: dict[str, Any] = {"runs": [mlflow_run(view) for view in page]}
        if offset + limit < len(runs):
            answer["next_page_token"] = str(offset + limit)
        return JSONResponse(answer)


def _int(value: Any, default: int, name: str) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ArmError(400, "InvalidParameterValue", f"{name} {value!r} is not a number.") from None
