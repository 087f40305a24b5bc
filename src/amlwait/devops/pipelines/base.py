"""What every pipeline route shares: the interface, the options, Azure DevOps' limits, the
steps several routes write, and the callback macros.

A *route* is one way of waiting for Azure ML jobs from Azure DevOps; each lives in its own
module of this package and implements :class:`PipelineRoute`. Everything here is pure: no
file or network I/O.

Limits the routes enforce (each breach is an :class:`~amlwait.errors.InputError`): every job
has an explicit ``timeoutInMinutes`` (``0`` has been seen to mean 60 minutes); ``headers``
and ``body`` of ``InvokeRESTAPI@1`` stay under 2,000 characters as written; the matrix limits
are in :mod:`amlwait.devops.pipelines.legs`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from amlwait.core.jobs import JobRef
from amlwait.core.wording import count
from amlwait.devops.yamltext import Node
from amlwait.errors import InputError

WAIT_TASK = "AzureMLJobWaitTask@1"
WAIT_TASK_MAX_MINUTES = 2880  # the task's documented maximum: two days
SERVER_JOB_MAX_MINUTES = 43200  # server jobs: 30 days
MAX_LEGS = 256
MAX_INPUT_CHARS = 2000  # InvokeRESTAPI@1 headers/body maxLength
# AzureMLJobWaitTask@1 reaches the service connection's subscription: a job list needs no id.
WAIT_TASK_SUBSCRIPTION = "(service connection)"

ARTIFACT = "training_jobs"
MANIFEST_FILE = "training_jobs.json"
MANIFEST_PATH = f"$(Pipeline.Workspace)/{ARTIFACT}/{MANIFEST_FILE}"

# What Azure DevOps expands, in a server job, into everything a callback to the running task
# needs (the plan's collection URL comes first, under a name each receiver spells its own way).
COLLECTION_URI_MACRO = "$(system.CollectionUri)"
CALLBACK_MACROS = (
    ("ProjectId", "$(system.TeamProjectId)"),
    ("HubName", "$(system.HostType)"),
    ("PlanId", "$(system.PlanId)"),
    ("JobId", "$(system.JobId)"),
    ("TimelineId", "$(system.TimelineId)"),
    ("TaskInstanceId", "$(system.TaskInstanceId)"),
    ("AuthToken", "$(system.AccessToken)"),
)


@dataclass(frozen=True)
class RenderOptions:
    """Everything a rendered pipeline needs besides the job list.

    ``service_connection`` is an Azure Resource Manager connection for every kind but
    ``service``, where it is the Generic connection to the amlwait service.
    ``timeout_minutes`` ``None`` means the kind's default. ``training_outputs`` is
    ``STAGE.JOB.STEP`` of the training stage's step that sets ``batchTag`` and
    ``jobCount`` (used by ``service``). ``install``, ``feed`` and ``index_url`` say where
    an agent step installs amlwait from (see :mod:`amlwait.devops.pipelines.install`;
    ``install`` ``None`` is the rendering version, pinned).
    """

    service_connection: str
    subscription: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    timeout_minutes: int | None = None
    agent: str = "hosted"
    pool: str | None = None
    max_legs: int = MAX_LEGS
    max_chunks: int = 4
    install: str | None = None
    feed: str | None = None
    index_url: str | None = None
    training_outputs: str = "Training.Submit.meta"
    report: bool = True
    """``pipeline``: add the agent job running ``amlwait report`` after the wait."""


@dataclass(frozen=True)
class RenderedFile:
    """One rendered file: where it belongs (relative path) and its text."""

    path: str
    text: str


class PipelineRoute(ABC):
    """One way of waiting for Azure ML jobs: its kind, its service connection, its files.

    A route is stateless; one instance per kind sits in the package's route table.
    """

    kind: ClassVar[str]
    """The ``KIND`` of ``amlwait render KIND``."""

    connection: ClassVar[str]
    """What ``--service-connection`` must name, as the error for a missing one says it."""

    installs_amlwait: ClassVar[bool] = False
    """Whether the route has an agent job installing amlwait (``--install`` applies)."""

    job_list_refusal: ClassVar[str | None] = None
    """Why the route takes no job list (it reads the manifest at run time), or ``None``."""

    connection_subscription: ClassVar[str | None] = None
    """The subscription a job list defaults to when ``--subscription`` is not given:
    ``None`` (the list must name one) unless the route's task reaches the subscription of
    its service connection by itself."""

    def check_connection(self, options: RenderOptions) -> None:
        """Raise :class:`InputError` unless ``options`` names a service connection.

        Separate from :meth:`render` so a command line can say so before it reads a job list.
        """
        if not options.service_connection:
            raise InputError(
                f"render {self.kind} needs --service-connection NAME ({self.connection})"
            )

    def check_job_list(self, given: bool) -> None:
        """Raise :class:`InputError` when a job list is ``given`` to a route that takes none.

        Separate from :meth:`render` so a command line can say so before it reads the list.
        """
        if given and self.job_list_refusal is not None:
            raise InputError(self.job_list_refusal)

    def check_install(self, options: RenderOptions) -> None:
        """Refuse ``--install``/``--feed``/``--index-url`` for a route that installs nothing."""
        given = [
            flag
            for flag, value in (
                ("--install", options.install),
                ("--feed", options.feed),
                ("--index-url", options.index_url),
            )
            if value is not None
        ]
        if given and not self.installs_amlwait:
            raise InputError(
                f"render {self.kind} runs no agent step, so it installs nothing: leave out "
                f"{'/'.join(given)} (they apply to agent and webhook-matrix)"
            )

    def render(
        self, options: RenderOptions, jobs: Sequence[JobRef] | None, tag: str | None
    ) -> list[RenderedFile]:
        """Every file the route needs, each with the relative path it suggests.

        ``jobs`` is the static job list (``None``: none was given); ``tag`` the batch tag
        the list came with. Checks the service connection first, then :meth:`files` checks
        the route's own preconditions; each breach is an :class:`InputError` of one line
        saying what to change. Pure: the same arguments give the same text.
        """
        self.check_connection(options)
        self.check_install(options)
        self.check_job_list(jobs is not None)
        return self.files(options, jobs, tag)

    @abstractmethod
    def files(
        self, options: RenderOptions, jobs: Sequence[JobRef] | None, tag: str | None
    ) -> list[RenderedFile]:
        """:meth:`render` once the connection is known: the route's preconditions (whether
        it takes, needs or refuses a job list among them), then its files."""


def callback_macros(plan_field: str) -> dict[str, str]:
    """The macros a callback to the running task needs, in the order Microsoft lists them.

    The collection URL under ``plan_field`` (``PlanUrl`` in ``InvokeRESTAPI@1``'s default
    headers, ``PlanUri`` in Azure ML's Azure DevOps webhook), then ``ProjectId``,
    ``HubName``, ``PlanId``, ``JobId``, ``TimelineId``, ``TaskInstanceId`` and ``AuthToken``.
    """
    return {plan_field: COLLECTION_URI_MACRO, **dict(CALLBACK_MACROS)}


def checked_timeout(
    minutes: int | None, *, default: int, maximum: int, why: str, minimum: int = 1
) -> int:
    """``minutes`` (``default`` when ``None``), refused unless ``minimum`` to ``maximum``;
    ``0`` is refused on its own, with the reason."""
    value = default if minutes is None else minutes
    if value == 0:
        raise InputError(
            "--timeout-minutes 0: Azure DevOps has been seen to read 0 as 60 minutes; "
            "give the minutes explicitly"
        )
    if not minimum <= value <= maximum:
        raise InputError(f"--timeout-minutes {value}: must be {minimum} to {maximum} ({why})")
    return value


def wait_task_timeout(options: RenderOptions) -> int:
    """The server job's minutes for ``AzureMLJobWaitTask@1``: 1 to 2,880, default 2,880."""
    return checked_timeout(
        options.timeout_minutes,
        default=WAIT_TASK_MAX_MINUTES,
        maximum=WAIT_TASK_MAX_MINUTES,
        why=f"{WAIT_TASK} waits at most two days",
    )


def one_subscription(jobs: Sequence[JobRef]) -> None:
    """Refuse jobs in several subscriptions: the wait task reaches only its connection's."""
    subscriptions = {job.workspace.subscription for job in jobs}
    if len(subscriptions) > 1:
        raise InputError(
            f"the jobs span {count(len(subscriptions), 'subscription')}, but {WAIT_TASK} "
            "reaches the subscription of its service connection only; render one file per "
            "subscription"
        )


def static_job_list(kind: str, jobs: Sequence[JobRef] | None) -> Sequence[JobRef]:
    """``jobs``, refused when absent or empty: ``kind`` writes the list into the YAML."""
    if not jobs:
        raise InputError(
            f"render {kind} writes a static job list: give --manifest FILE or --jobs A,B"
        )
    return jobs


def require(value: str | None, flag: str, kind: str, what: str) -> str:
    """``value``, or an :class:`InputError` saying ``render KIND needs FLAG (WHAT)``."""
    if not value:
        raise InputError(f"render {kind} needs {flag} ({what})")
    return value


def check_input_length(name: str, text: str) -> None:
    """Refuse an ``InvokeRESTAPI@1`` input of 2,000 characters or more."""
    if len(text) >= MAX_INPUT_CHARS:
        raise InputError(
            f"the InvokeRESTAPI@1 {name} would be {len(text)} characters; the task accepts "
            f"fewer than {MAX_INPUT_CHARS}"
        )


def download_step() -> dict[str, Node]:
    """An agent step downloading the job manifest artifact into ``$(Pipeline.Workspace)``."""
    return {
        "task": "DownloadPipelineArtifact@2",
        "displayName": f"Download the job manifest ({ARTIFACT})",
        "inputs": {
            "buildType": "current",
            "artifactName": ARTIFACT,
            "targetPath": f"$(Pipeline.Workspace)/{ARTIFACT}",
        },
    }


def wait_task(service_connection: str) -> dict[str, Node]:
    """An ``AzureMLJobWaitTask@1`` step for the matrix leg's ``$(jobName)``."""
    return {
        "task": WAIT_TASK,
        "displayName": "Wait for $(jobName)",
        "inputs": {
            "serviceConnection": service_connection,
            "resourceGroupName": "$(resourceGroup)",
            "azureMLWorkspaceName": "$(workspace)",
            "azureMLJobName": "$(jobName)",
        },
    }


def document_stream(files: Sequence[RenderedFile]) -> str:
    """Several files as one YAML stream, each introduced by a ``# file:`` comment."""
    parts = [f"# file: {file.path}\n{file.text}" for file in files]
    return "---\n".join(parts)
