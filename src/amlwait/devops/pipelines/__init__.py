"""Pipeline YAML for every way of waiting for Azure ML jobs from Azure DevOps.

Pure: job references and options in, YAML text out; no file or network I/O. One module per
route, each a :class:`~amlwait.devops.pipelines.base.PipelineRoute` (the interface, the
options and what the routes share are in ``base``; matrix legs in ``legs``):

=================  ==========================================================  =========
kind               what waits                                                  job list
=================  ==========================================================  =========
``matrix``         ``AzureMLJobWaitTask@1`` legs of a ``pool: server`` matrix  static
``template``       a jobs template: one server job per Azure ML job            static
``agent``          ``amlwait wait`` on an agent (reports, test results)        run time
``webhook-matrix`` a generator job, then server-job legs that register Azure   run time
                   ML's DevOps webhook with ``InvokeRESTAPI@1`` (PATCH)
``service``        one server job calling the amlwait waiting service          run time
``pipeline``       one ``AzureMLJobWaitTask@1`` on the pipeline job of         run time
                   ``submit --as-pipeline``, then ``amlwait report`` (agent)   (submit)
=================  ==========================================================  =========
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from amlwait.core.jobs import JobRef
from amlwait.devops.pipelines.agent import AgentRoute, render_agent
from amlwait.devops.pipelines.base import (
    MAX_INPUT_CHARS,
    MAX_LEGS,
    PipelineRoute,
    RenderedFile,
    RenderOptions,
    document_stream,
)
from amlwait.devops.pipelines.legs import (
    LEG_NAME_PATTERN,
    leg_names,
    matrix_chunks,
    matrix_variable_lines,
)
from amlwait.devops.pipelines.matrix import MatrixRoute, render_matrix
from amlwait.devops.pipelines.pipeline import PipelineJobRoute, render_pipeline
from amlwait.devops.pipelines.service import (
    ServiceRoute,
    render_service,
    service_body,
    service_headers,
)
from amlwait.devops.pipelines.template import (
    TemplateRoute,
    render_template_file,
    render_template_usage,
)
from amlwait.devops.pipelines.webhook import (
    WebhookMatrixRoute,
    render_webhook_matrix,
    webhook_body,
)
from amlwait.errors import InputError

ROUTES: Mapping[str, PipelineRoute] = MappingProxyType(
    {
        route.kind: route
        for route in (
            MatrixRoute(),
            TemplateRoute(),
            AgentRoute(),
            WebhookMatrixRoute(),
            ServiceRoute(),
            PipelineJobRoute(),
        )
    }
)
KINDS = tuple(ROUTES)


def route_for(kind: str) -> PipelineRoute:
    """The route rendering ``kind``; an :class:`InputError` listing the kinds otherwise."""
    route = ROUTES.get(kind)
    if route is None:
        raise InputError(f"unknown KIND {kind!r}; choose one of {' · '.join(KINDS)}")
    return route


def render(
    kind: str,
    options: RenderOptions,
    *,
    jobs: Sequence[JobRef] | None = None,
    tag: str | None = None,
) -> list[RenderedFile]:
    """Every file ``kind`` needs, with the relative path it suggests for each
    (:meth:`PipelineRoute.render` of ``route_for(kind)``)."""
    return route_for(kind).render(options, jobs, tag)


__all__ = [
    "KINDS",
    "LEG_NAME_PATTERN",
    "MAX_INPUT_CHARS",
    "MAX_LEGS",
    "ROUTES",
    "PipelineRoute",
    "RenderOptions",
    "RenderedFile",
    "document_stream",
    "leg_names",
    "matrix_chunks",
    "matrix_variable_lines",
    "render",
    "render_agent",
    "render_matrix",
    "render_pipeline",
    "render_service",
    "render_template_file",
    "render_template_usage",
    "render_webhook_matrix",
    "route_for",
    "service_body",
    "service_headers",
    "webhook_body",
]
