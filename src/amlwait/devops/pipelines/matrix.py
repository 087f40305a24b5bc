"""The ``matrix`` route: static ``pool: server`` matrix jobs, one ``AzureMLJobWaitTask@1``
leg per job. Agentless; the job list is fixed when rendering."""

from __future__ import annotations

from collections.abc import Sequence

from amlwait.core.jobs import JobRef
from amlwait.devops.pipelines.base import (
    WAIT_TASK_SUBSCRIPTION,
    PipelineRoute,
    RenderedFile,
    RenderOptions,
    one_subscription,
    static_job_list,
    wait_task,
    wait_task_timeout,
)
from amlwait.devops.pipelines.legs import matrix_chunks
from amlwait.devops.yamltext import Commented, Node, dump


def render_matrix(jobs: Sequence[JobRef], options: RenderOptions) -> str:
    """Static ``pool: server`` matrix jobs, one ``AzureMLJobWaitTask@1`` leg per job."""
    one_subscription(jobs)
    timeout = wait_task_timeout(options)
    chunks = matrix_chunks(jobs, max_legs=options.max_legs, with_subscription=False)
    rendered: list[Node] = []
    for index, chunk in enumerate(chunks):
        rendered.append(
            {
                "job": f"WaitForJobs_{index}",
                "displayName": f"Wait for Azure ML jobs ({index + 1}/{len(chunks)})",
                "pool": "server",
                "timeoutInMinutes": Commented(timeout, "the task's documented maximum: 2 days"),
                "strategy": {"matrix": chunk},
                "steps": [wait_task(options.service_connection)],
            }
        )
    header = [
        f"Rendered by `amlwait render matrix`: {len(jobs)} Azure ML jobs, one matrix leg each,",
        f"at most {options.max_legs} legs per server job. Agentless: no agent minutes. Needs the",
        "Azure Machine Learning extension (ms-air-aiagility.azureml-v2). The job list is",
        "static: render again when it changes. Put these jobs in the waiting stage.",
    ]
    return dump({"jobs": rendered}, header=header)


class MatrixRoute(PipelineRoute):
    """``wait-matrix.yml``; needs a job list, all in one subscription."""

    kind = "matrix"
    connection = "the Azure Resource Manager service connection"
    connection_subscription = WAIT_TASK_SUBSCRIPTION

    def files(
        self, options: RenderOptions, jobs: Sequence[JobRef] | None, tag: str | None
    ) -> list[RenderedFile]:
        listed = static_job_list(self.kind, jobs)
        return [RenderedFile("wait-matrix.yml", render_matrix(listed, options))]
