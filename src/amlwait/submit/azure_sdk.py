"""The same batch through azure-ai-ml (``pip install amlwait[azure]``) instead of plain ARM.

Each circuit's job is the template as :meth:`JobTemplate.render` fills it in for that
circuit, loaded by ``azure.ai.ml.load_job`` (local paths relative to the template's
folder), with the name and tags :mod:`~amlwait.submit.plan` gave it. Submitting goes
through ``MLClient.jobs.create_or_update``, which does what plain ARM cannot: it uploads
the local ``code`` folder, builds inline environments, and turns ``azureml:NAME@latest``
into a concrete environment version before the PUT.

Foot-guns avoided: ``load_job`` returns a ``Command`` *node*, whose ``name`` setter
lower-cases (``PLANT001_…`` → ``plant001_…``), so the job would not be found under the
name in the manifest; and ``jobs.create_or_update`` refuses the ``CommandJob`` that
``_to_job()`` would give ("Non supported job type"). :func:`sdk_command_job` keeps the
node and sets its name past the setter.

azure-ai-ml is imported only inside functions: without it, amlwait works and these raise
one :class:`InputError` saying what to install.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from amlwait.core.attempts import split_attempt
from amlwait.core.jobs import JobRef, JobSnapshot, WorkspaceRef
from amlwait.errors import AuthenticationError, InputError, ServiceError
from amlwait.submit.plan import Batch, PlannedJob
from amlwait.submit.template import JobTemplate, placeholder_values

INSTALL_HINT = "azure-ai-ml is not installed; install amlwait[azure] (pip install 'amlwait[azure]')"


def _require_sdk() -> None:
    try:
        import azure.ai.ml  # noqa: F401
    except ImportError:
        raise InputError(INSTALL_HINT) from None


def sdk_command_job(template: JobTemplate, batch: Batch, planned: PlannedJob) -> Any:
    """``planned``'s job as azure-ai-ml loads it (a ``Command``): the template rendered for
    its circuit, named exactly ``planned.base_name`` and tagged as in ``planned.properties``."""
    _require_sdk()
    from azure.ai.ml import load_job

    circuit = planned.circuit
    values = placeholder_values(circuit.plant, circuit.circuit, batch.run_date, circuit.params)
    document = template.render(values, circuit.key)
    # The SDK resolves local paths (code, inputs) against relative_origin's folder.
    origin = template.folder / Path(template.source).name
    try:
        loaded = load_job(
            io.StringIO(yaml.safe_dump(document, sort_keys=False, allow_unicode=True)),
            relative_origin=str(origin),
        )
    except Exception as error:  # the SDK's validation errors have no common base
        raise InputError(
            f"{template.source}: azure-ai-ml cannot load the job for {circuit.key}: "
            + " ".join(str(error).split())
        ) from None
    _set_name(loaded, planned.base_name)
    loaded.tags = dict(planned.properties.get("tags") or {})
    return loaded


def _set_name(job: Any, name: str) -> None:
    """Name ``job`` exactly ``name``. A ``Command`` node's ``name`` setter lower-cases, and
    ``jobs.create_or_update`` resolves a Command node's code and environment but refuses a
    ``CommandJob`` ("Non supported job type", azure-ai-ml 1.35): so the node is kept and
    its name set past the setter."""
    if hasattr(job, "_to_job"):
        job._name = name
    else:
        job.name = name


class AzureMLSubmitSource:
    """A :class:`~amlwait.submit.submitter.SubmitSource` over azure-ai-ml's ``MLClient``.

    ``jobs`` maps each first-attempt name to its SDK job (:func:`sdk_command_job`);
    ``put_job(ref, …)`` submits the job of ``ref``'s base name under ``ref.name`` (so
    ``NAME_r2`` re-runs ``NAME``'s job); the ARM ``properties`` the submitter passes are
    not used. The SDK is synchronous: calls run in worker threads, and submissions one at
    a time, because concurrent uploads of the same code folder race to create one asset.
    """

    def __init__(self, ml_client: Any, jobs: Mapping[str, Any]) -> None:
        self.ml_client = ml_client
        self.jobs = dict(jobs)
        self._put_lock = asyncio.Lock()

    @classmethod
    def for_batch(
        cls, template: JobTemplate, batch: Batch, *, credential: Any = None
    ) -> AzureMLSubmitSource:
        """An ``MLClient`` on ``batch.workspace`` (``DefaultAzureCredential`` unless
        ``credential`` is given) and every circuit's SDK job."""
        _require_sdk()
        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential

        workspace: WorkspaceRef = batch.workspace
        client = MLClient(
            credential or DefaultAzureCredential(),
            subscription_id=workspace.subscription,
            resource_group_name=workspace.resource_group,
            workspace_name=workspace.workspace,
        )
        jobs = {job.base_name: sdk_command_job(template, batch, job) for job in batch.jobs}
        return cls(client, jobs)

    async def __aenter__(self) -> AzureMLSubmitSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        close = getattr(self.ml_client, "close", None)
        if callable(close):
            close()

    async def get_job(self, ref: JobRef) -> JobSnapshot | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            job = await asyncio.to_thread(self.ml_client.jobs.get, ref.name)
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise _service_error(error, ref.name) from None
        return snapshot_of(job)

    async def put_job(self, ref: JobRef, properties: Mapping[str, Any]) -> JobSnapshot:
        from azure.core.exceptions import AzureError

        base, _ = split_attempt(ref.name)
        template_job = self.jobs.get(base)
        if template_job is None:
            raise InputError(f"{ref.name}: no azure-ai-ml job was prepared for {base}")
        # Named in place (a Command node cannot be deep-copied): each circuit's node is
        # submitted once per batch, under whichever attempt name the submitter chose.
        job = template_job
        _set_name(job, ref.name)
        async with self._put_lock:
            try:
                created = await asyncio.to_thread(self.ml_client.jobs.create_or_update, job)
            except AzureError as error:  # azure-ai-ml's own errors (MlException) included
                raise _service_error(error, ref.name) from None
        return snapshot_of(created)


def snapshot_of(job: Any) -> JobSnapshot:
    """The :class:`JobSnapshot` of an azure-ai-ml ``Job``."""
    context = getattr(job, "creation_context", None)
    created: Any = getattr(context, "created_at", None)
    return JobSnapshot(
        name=str(job.name),
        status=str(job.status or "Unknown"),
        tags={str(k): str(v) for k, v in (job.tags or {}).items()},
        studio_url=getattr(job, "studio_url", None),
        created_at=created.isoformat() if hasattr(created, "isoformat") else None,
    )


def _service_error(error: BaseException, job: str) -> ServiceError | AuthenticationError:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, ClientAuthenticationError):
        return AuthenticationError(f"{job}: Azure refused the credential: {message}")
    status = error.status_code if isinstance(error, HttpResponseError) else None
    return ServiceError(f"{job}: {message}", status_code=status, job=job)
