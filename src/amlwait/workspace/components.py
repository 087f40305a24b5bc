"""The component-version routes of the local workspace (shapes in :mod:`~.pipelines`):
``GET``/``PUT WS/components/{name}/versions/{version}`` (the spec's
``ComponentVersions_Get`` / ``ComponentVersions_CreateOrUpdate``). Served only over the
SQLite store (:class:`~.store.JobStore`); the scripted workspace has no components."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from amlwait.core.jobs import WorkspaceRef
from amlwait.workspace.errors import ArmError
from amlwait.workspace.pipelines import check_asset_name, parse_component_body

Handler = Callable[[Request, Mapping[str, str]], Awaitable[Response]]
VERSION_PATH = r"/components/(?P<component>[^/]+)/versions/(?P<version>[^/]+)"


def component_routes(backend: object) -> list[tuple[str, dict[str, Handler]]]:
    """``(path under WS, {method: handler})`` for a backend that keeps components."""
    from amlwait.workspace.store import JobStore  # the store imports the app's neighbours

    if not isinstance(backend, JobStore):
        return []
    store = backend

    def where(params: Mapping[str, str]) -> tuple[WorkspaceRef, str, str]:
        workspace = WorkspaceRef(params["sub"], params["rg"], params["ws"])
        name, version = params["component"], params["version"]
        check_asset_name(name, "name")
        check_asset_name(version, "version")
        return workspace, name, version

    async def get_version(request: Request, params: Mapping[str, str]) -> Response:
        workspace, name, version = where(params)
        found = store.get_component(workspace, name, version)
        if found is None:
            raise ArmError(
                404,
                "NotFound",
                f"The component '{name}' version '{version}' was not found in workspace "
                f"'{workspace.workspace}'.",
            )
        return JSONResponse(found)

    async def put_version(request: Request, params: Mapping[str, str]) -> Response:
        workspace, name, version = where(params)
        properties = parse_component_body(await request.body())
        document, created = store.put_component(workspace, name, version, properties)
        return JSONResponse(document, status_code=201 if created else 200)

    return [(VERSION_PATH, {"GET": get_version, "PUT": put_version})]
