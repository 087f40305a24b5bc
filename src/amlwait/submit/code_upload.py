"""A job's local code folder → a registered Azure ML code asset, once per batch.

ARM's ``Jobs_CreateOrUpdate`` takes ``codeId`` only as the ARM id of a code version
(``…/workspaces/WS/codes/NAME/versions/V``). :func:`register_batch_code` makes one for
every distinct local folder of a batch, with the operations of the published spec
(2024-04-01 ``mfe.json``) that azure-ai-ml's ``CodeOperations.create_or_update`` uses
(see ``docs/submit.md``), and puts its id in every job that names the folder::

    GET  WS/codes/{hash}/versions/1                    CodeVersions_Get
         200 → registered already: done (1 request per folder)
    POST WS/codes/{hash}/versions/1/startPendingUpload CodeVersions_CreateOrGetStartPendingUpload
         {"pendingUploadType": "TemporaryBlobReference"}
         → blobReferenceForConsumption: blobUri, credential.sasUri (container SAS)
    PUT  {container}/{folder}/{relative path}?{sas}    Put Blob (BlockBlob), one per file,
         at most UPLOAD_CONCURRENCY at once, no bearer token (the SAS authorises it)
    PUT  WS/codes/{hash}/versions/1                    CodeVersions_CreateOrUpdate
         {"properties": {"codeUri": "{blobUri}/{folder}", "isAnonymous": true,
                         "properties": {"hash_sha256": hash, "hash_version": "202208"}}}

so a new folder costs ``files + 3`` requests and a known one 1, whatever the number of
circuits. The name is the folder's content hash (:func:`content_hash`, the algorithm of
azure-ai-ml's ``get_content_hash``), the version ``1``: the same files give the same code
id, a changed file a new one, and a code version never changes its content, as Azure
requires. A folder is read whole: files are followed through symlinks and none is
ignored (``.amlignore``/``.gitignore`` are not read); at most ``MAX_FILES`` files and
``MAX_BYTES`` bytes, else :class:`~amlwait.errors.InputError`.

ARM requests go through the job source's own client (token, budget, retries); blob PUTs
through a separate client that never carries the token, over https (or plain http only
to loopback), retried on 408/429/5xx and transport errors with the source's policy. A
SAS URI is a secret: no message here contains one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit
from urllib.request import url2pathname

import httpx

from amlwait.azureml.credentials import is_loopback
from amlwait.azureml.http import amlwait_client
from amlwait.core.jobs import WorkspaceRef
from amlwait.core.retry import is_retryable_status
from amlwait.errors import InputError, ServiceError
from amlwait.submit.plan import Batch

CODE_VERSION = "1"
HASH_VERSION = "202208"  # azure-ai-ml's get_content_hash_version()
MAX_FILES = 10_000
MAX_BYTES = 512 * 1024 * 1024
UPLOAD_CONCURRENCY = 8
BLOB_API_VERSION = "2021-08-06"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class CodeFolder:
    """A local code folder as it will be uploaded: ``files`` are ``(path, relative posix
    name)`` sorted by lower-cased name; ``content_hash`` names it."""

    path: Path
    files: tuple[tuple[Path, str], ...]
    size: int
    content_hash: str

    @property
    def asset_name(self) -> str:
        return self.content_hash

    def asset_id(self, workspace: WorkspaceRef) -> str:
        """The ARM id of this folder's code version in ``workspace``."""
        return f"{workspace.arm_path}/codes/{self.asset_name}/versions/{CODE_VERSION}"


@dataclass(frozen=True)
class RegisteredCode:
    """What registering one folder did: ``uploaded`` files (0 when it was registered)."""

    folder: CodeFolder
    asset_id: str
    uploaded: int

    def describe(self) -> str:
        short = f"{self.folder.asset_name[:12]}…:{CODE_VERSION}"
        if self.uploaded == 0:
            return f"code {self.folder.path.name}/: code asset {short} is registered already"
        return (
            f"code {self.folder.path.name}/: uploaded {self.uploaded} files "
            f"({self.folder.size} bytes) as code asset {short}"
        )


class ArmSender(Protocol):
    """What registering needs of :class:`~amlwait.azureml.arm.ArmJobSource`."""

    endpoint: str
    api_version: str

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        job: str | None = None,
        ok_statuses: tuple[int, ...] = (200,),
    ) -> httpx.Response: ...


def local_code_folder(code_id: Any) -> Path | None:
    """The local folder a ``file://`` ``codeId`` names (``None`` for any other id)."""
    if not isinstance(code_id, str):
        return None
    parts = urlsplit(code_id)
    if parts.scheme.lower() != "file":
        return None
    if parts.netloc not in ("", "localhost"):
        raise InputError(f"code {code_id!r} names a folder on another machine; give a local folder")
    return Path(url2pathname(parts.path))


def scan_code_folder(path: Path) -> CodeFolder:
    """Every file of ``path`` and the folder's content hash, or :class:`InputError`.

    The hash is azure-ai-ml's ``get_content_hash``: sha256 over the file count, then for
    each file (sorted by lower-cased relative name) ``#name#`` and its size, then every
    file's bytes in the same order."""
    if not path.is_dir():
        raise InputError(f"code folder {path} is not a folder")
    files: list[tuple[Path, str]] = []
    size = 0
    for root, _, names in os.walk(path, followlinks=True):
        for name in names:
            file = Path(root, name)
            if not file.is_file():
                continue  # a dangling link: nothing to upload
            files.append((file, file.relative_to(path).as_posix()))
            size += file.stat().st_size
            if len(files) > MAX_FILES or size > MAX_BYTES:
                raise InputError(
                    f"code folder {path} holds more than {MAX_FILES} files or "
                    f"{MAX_BYTES // (1024 * 1024)} MiB; point code: at the training code only"
                )
    if not files:
        raise InputError(f"code folder {path} is empty; Azure ML refuses an empty code folder")
    files.sort(key=lambda item: item[1].lower())
    digest = hashlib.sha256(str(len(files)).encode())
    for file, name in files:
        digest.update(f"#{name}#".encode())
        digest.update(str(file.stat().st_size).encode())
    for file, _ in files:
        with file.open("rb") as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(chunk)
    return CodeFolder(path, tuple(files), size, digest.hexdigest())


def batch_code_folders(batch: Batch) -> list[Path]:
    """The distinct local code folders the batch's jobs name, in first-use order."""
    seen: dict[Path, None] = {}
    for job in batch.jobs:
        folder = local_code_folder(job.properties.get("codeId"))
        if folder is not None:
            seen.setdefault(folder.resolve(), None)
    return list(seen)


def refuse_local_code(batch: Batch, endpoint: str) -> None:
    """InputError when a job would send a ``file://`` codeId to ``endpoint`` that is not
    on loopback: only the local workspace on this machine can read that folder."""
    if is_loopback(endpoint):
        return
    for job in batch.jobs:
        code_id = job.properties.get("codeId")
        if local_code_folder(code_id) is not None:
            raise InputError(
                f"{job.key}: code {code_id} is a local folder, which {endpoint} cannot read; "
                "submit without --no-code-upload to upload it as a code asset"
            )


def with_code_ids(batch: Batch, asset_ids: Mapping[Path, str]) -> Batch:
    """``batch`` with each local-folder ``codeId`` replaced by its code asset's id."""
    jobs = []
    for job in batch.jobs:
        folder = local_code_folder(job.properties.get("codeId"))
        if folder is None:
            jobs.append(job)
            continue
        properties = {**job.properties, "codeId": asset_ids[folder.resolve()]}
        jobs.append(replace(job, properties=properties))
    return replace(batch, jobs=tuple(jobs))


class CodeRegistrar:
    """Registers code folders in one workspace through ``source`` (see the module)."""

    def __init__(
        self,
        source: ArmSender,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        request_timeout: float = 120.0,
        attempts: int = 5,
    ) -> None:
        self.source = source
        self.attempts = attempts
        self.blob_requests = 0
        self._client = amlwait_client(request_timeout, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _version_url(self, workspace: WorkspaceRef, folder: CodeFolder) -> str:
        return (
            f"{self.source.endpoint}{workspace.arm_path}/codes/"
            f"{quote(folder.asset_name, safe='')}/versions/{CODE_VERSION}"
        )

    async def register(self, workspace: WorkspaceRef, folder: CodeFolder) -> RegisteredCode:
        """The code version of ``folder`` in ``workspace``, uploaded and registered unless
        it exists. ServiceError when the service refuses or keeps failing."""
        url = self._version_url(workspace, folder)
        params = {"api-version": self.source.api_version}
        what = f"code folder {folder.path.name}/"
        found = await self.source._send("GET", url, params=params, job=what)
        asset_id = folder.asset_id(workspace)
        if found.status_code == 200:
            return RegisteredCode(folder, asset_id, 0)
        pending = await self.source._send(
            "POST",
            url + "/startPendingUpload",
            params=params,
            json={"pendingUploadType": "TemporaryBlobReference"},
            job=what,
        )
        if pending.status_code == 404:
            raise ServiceError(
                f"{what}: workspace {workspace} was not found, or it serves no code assets "
                "(404 on startPendingUpload)"
            )
        blob_uri, sas_uri = _blob_reference(pending.json(), what)
        await self._upload(folder, sas_uri, what)
        registered = await self.source._send(
            "PUT",
            url,
            params=params,
            json={
                "properties": {
                    "codeUri": f"{blob_uri.rstrip('/')}/{quote(folder.path.name)}",
                    "isAnonymous": True,
                    "properties": {
                        "hash_sha256": folder.content_hash,
                        "hash_version": HASH_VERSION,
                    },
                }
            },
            job=what,
            ok_statuses=(200, 201),
        )
        if registered.status_code == 404:
            raise ServiceError(f"{what}: workspace {workspace} was not found")
        return RegisteredCode(folder, asset_id, len(folder.files))

    async def _upload(self, folder: CodeFolder, sas_uri: str, what: str) -> None:
        parts = urlsplit(sas_uri)
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(sas_uri)):
            raise ServiceError(
                f"{what}: the workspace gave an upload address that is neither https nor "
                "loopback; refusing to send the code there"
            )
        slots = asyncio.Semaphore(UPLOAD_CONCURRENCY)
        base = parts.path.rstrip("/") + "/" + quote(folder.path.name)

        async def one(file: Path, name: str) -> None:
            url = urlunsplit((parts.scheme, parts.netloc, f"{base}/{quote(name)}", parts.query, ""))
            async with slots:
                await self._put_blob(url, file, f"{what}{name}")

        await asyncio.gather(*(one(file, name) for file, name in folder.files))

    async def _put_blob(self, url: str, file: Path, what: str) -> None:
        try:
            content = file.read_bytes()
        except OSError as error:
            raise InputError(f"cannot read {file}: {error.strerror or error}") from None
        headers = {
            "x-ms-blob-type": "BlockBlob",
            "x-ms-version": BLOB_API_VERSION,
            "Content-Type": "application/octet-stream",
        }
        problem = ""
        for attempt in range(1, self.attempts + 1):
            self.blob_requests += 1
            try:
                response = await self._client.put(url, content=content, headers=headers)
            except httpx.TransportError as error:
                problem = type(error).__name__
            else:
                if response.status_code in (200, 201):
                    return
                code = response.headers.get("x-ms-error-code", "")
                problem = f"{response.status_code} {code}".strip()
                if not is_retryable_status(response.status_code):
                    raise ServiceError(f"uploading {what} was refused: {problem}")
            if attempt < self.attempts:
                await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
        raise ServiceError(f"uploading {what} kept failing: {problem} ({self.attempts} attempts)")


def _blob_reference(body: Any, what: str) -> tuple[str, str]:
    reference = (body or {}).get("blobReferenceForConsumption") or {}
    blob_uri = reference.get("blobUri")
    sas_uri = (reference.get("credential") or {}).get("sasUri")
    if not isinstance(blob_uri, str) or not isinstance(sas_uri, str):
        raise ServiceError(
            f"{what}: startPendingUpload answered without blobReferenceForConsumption "
            "blobUri and credential.sasUri"
        )
    return blob_uri, sas_uri


async def register_batch_code(
    batch: Batch,
    source: ArmSender,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Batch, list[RegisteredCode]]:
    """``batch`` with every local code folder registered (once each) and named by its
    code asset's ARM id, and what was done for each folder."""
    folders = [scan_code_folder(path) for path in batch_code_folders(batch)]
    if not folders:
        return batch, []
    registrar = CodeRegistrar(source, transport=transport)
    try:
        done = [await registrar.register(batch.workspace, folder) for folder in folders]
    finally:
        await registrar.aclose()
    return with_code_ids(batch, {r.folder.path: r.asset_id for r in done}), done


def blob_request_count(results: Iterable[RegisteredCode]) -> int:
    """Blob PUTs the registrations needed (one per uploaded file, retries not counted)."""
    return sum(r.uploaded for r in results)
