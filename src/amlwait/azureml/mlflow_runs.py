"""The MLflow tracking API of a workspace, read with the ARM source's token and budget.

Only what the change feed needs (:mod:`amlwait.core.changes`): the workspace's
``mlFlowTrackingUri`` (from its ARM resource), experiment ids by name
(``GET experiments/get-by-name``) and ``POST runs/search``, in MLflow's REST shapes
(mlflow.org REST API; Azure ML serves them under the tracking URI). Requests go through
:meth:`ArmJobSource.send`, so they share its request budget, retries and request count.
"""

from __future__ import annotations

from typing import Any

from amlwait.azureml.arm import ArmJobSource
from amlwait.core.changes import RunSearch, SeenRun
from amlwait.core.jobs import WorkspaceRef
from amlwait.errors import ServiceError

MLFLOW_API = "/api/2.0/mlflow"


def rest_base(tracking_uri: str) -> str:
    """The HTTP base of a tracking URI: Azure's ``azureml://HOST/mlflow/v1.0/...`` is
    served over https at the same host and path (what the azureml-mlflow plugin does)."""
    if tracking_uri.startswith("azureml://"):
        tracking_uri = "https://" + tracking_uri[len("azureml://") :]
    return tracking_uri.rstrip("/")


class MlflowRuns:
    """Searches a workspace's MLflow runs through ``source`` (one instance per wait)."""

    def __init__(self, source: ArmJobSource) -> None:
        self.source = source
        self._bases: dict[WorkspaceRef, str | None] = {}
        self._experiments: dict[tuple[WorkspaceRef, str], str | None] = {}

    async def tracking_uri(self, workspace: WorkspaceRef) -> str | None:
        """The workspace's ``mlFlowTrackingUri``, or None when its resource names none."""
        if workspace not in self._bases:
            url = f"{self.source.endpoint}{workspace.arm_path}"
            answer = await self.source.send(
                "GET", url, params={"api-version": self.source.api_version}
            )
            if answer.status_code == 404:
                raise ServiceError(f"workspace {workspace} was not found (404)")
            uri = (answer.json().get("properties") or {}).get("mlFlowTrackingUri")
            self._bases[workspace] = rest_base(str(uri)) if uri else None
        return self._bases[workspace]

    async def _base(self, workspace: WorkspaceRef) -> str:
        base = await self.tracking_uri(workspace)
        if base is None:
            raise ServiceError(f"workspace {workspace} advertises no MLflow tracking URI")
        return base + MLFLOW_API

    async def experiment_id(self, workspace: WorkspaceRef, name: str) -> str | None:
        """The id of experiment ``name``; None when MLflow does not know it (yet)."""
        key = (workspace, name)
        if self._experiments.get(key) is None:
            answer = await self.source.send(
                "GET",
                await self._base(workspace) + "/experiments/get-by-name",
                params={"experiment_name": name},
            )
            found = None
            if answer.status_code == 200:
                found = str((answer.json().get("experiment") or {}).get("experiment_id") or "")
            self._experiments[key] = found or None
        return self._experiments[key]

    async def search(self, search: RunSearch) -> tuple[list[SeenRun], str | None]:
        """One page of ``search``: its runs, and the next page's token (None: last)."""
        ids = [
            found
            for name in search.experiments
            if (found := await self.experiment_id(search.workspace, name)) is not None
        ]
        if not ids:
            return [], None
        body: dict[str, Any] = {
            "experiment_ids": ids,
            "filter": search.filter,
            "max_results": search.max_results,
            "run_view_type": "ACTIVE_ONLY",
        }
        if search.order_by:
            body["order_by"] = list(search.order_by)
        if search.page_token:
            body["page_token"] = search.page_token
        answer = await self.source.send(
            "POST", await self._base(search.workspace) + "/runs/search", json=body
        )
        if answer.status_code == 404:
            raise ServiceError("the MLflow runs/search endpoint answered 404")
        document = answer.json()
        runs = []
        for run in document.get("runs") or []:
            info = run.get("info") or {}
            end = info.get("end_time")
            runs.append(
                SeenRun(
                    str(info.get("run_id") or info.get("run_uuid") or ""),
                    str(info.get("status") or ""),
                    int(end) if end is not None else None,
                )
            )
        token = document.get("next_page_token") or None
        return runs, (str(token) if token else None)
