"""Code assets in the local workspace, served as Azure ML serves them.

Azure ML runs a job's code from a **code asset**: a folder uploaded to blob storage and
registered as ``WS/codes/{name}/versions/{version}``; a job names it by that ARM id in
``properties.codeId``. azure-ai-ml (``CodeOperations.create_or_update``) and ``amlwait
submit`` register code with the operations of the published spec (2024-04-01 ``mfe.json``),
and this module answers them (``WS`` = ``/subscriptions/{sub}/resourceGroups/{rg}/
providers/Microsoft.MachineLearningServices/workspaces/{ws}``):

- ``GET WS/codes/{name}/versions/{version}`` (``CodeVersions_Get``): the
  ``CodeVersionResource``, or 404;
- ``PUT WS/codes/{name}/versions/{version}`` (``CodeVersions_CreateOrUpdate``): 201 when
  new, 200 when it exists; a different ``codeUri`` for an existing version is refused (400),
  as Azure refuses to change an asset's path. The ``codeUri`` must name a folder uploaded
  here (below);
- ``GET WS/codes/{name}/versions`` (``CodeVersions_List``): one page; with ``hash``
  (and ``hashVersion``) the versions of *any* name whose ``hash_sha256`` (and
  ``hash_version``) properties match, which is how azure-ai-ml finds a folder it uploaded
  before (it asks under a new random name and reuses the version the answer names);
- ``POST WS/codes/{name}/versions/{version}/startPendingUpload``
  (``CodeVersions_CreateOrGetStartPendingUpload``): a ``PendingUploadResponseDto`` whose
  ``blobReferenceForConsumption`` gives ``blobUri`` (a fresh container) and a ``SAS``
  credential, ``sasUri`` = ``blobUri?sv=…&sig=SECRET``.

These pass the app's checks like any ARM route (bearer token, ``api-version``, throttle).

The blob side is this same server, addressed path-style as the storage emulator is
(``http://HOST/amlwaitblobs/{container}/{blob}``, so azure-storage-blob reads the account
from the path), and authorised by the container's ``sig`` alone (no bearer token, as with
a SAS): ``PUT`` a block blob (``x-ms-blob-type: BlockBlob``, at most ``MAX_BLOB_BYTES``),
``PUT ?comp=metadata``, ``HEAD``/``GET`` its properties. Anything else there is 404/405.

Storage, apart from the job store, under ``DATA_DIR/code-assets/``::

    uploads/{container}.json           the container's sig and the version it was opened for
    blobs/{container}/{blob path}      uploaded files (what a job's code folder is copied from)
    blob-metadata/{container}/{blob}.json
    versions/{sub}/{rg}/{ws}/{name}/{version}.json   the CodeVersionResource

A job's code-asset ``codeId`` is resolved by :func:`uploaded_code_folder` (the runtime
calls it), to ``blobs/{container}/{folder}`` named by the version's ``codeUri``.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from amlwait.workspace.errors import ArmError

ASSETS_DIR = "code-assets"
BLOB_ACCOUNT = "amlwaitblobs"
BLOB_PREFIX = f"/{BLOB_ACCOUNT}/"
MAX_BLOB_BYTES = 256 * 1024 * 1024
CODE_VERSION_TYPE = "Microsoft.MachineLearningServices/workspaces/codes/versions"
_WRITABLE = frozenset({"codeUri", "isAnonymous", "isArchived", "description", "properties", "tags"})
_READ_ONLY = frozenset({"provisioningState"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_.]{0,254}$")
_CONTAINER = re.compile(r"^code-[0-9a-f]{32}$")
_CODE_VERSION_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
    r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/?$",
    re.IGNORECASE,
)

Handler = Callable[[Request, Mapping[str, str]], Awaitable[Response]]


class CodeAssetError(Exception):
    """A code-asset id a job names cannot be run here; the message says why."""


class CodeAssets:
    """The code versions and uploaded blobs of a local workspace on ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).absolute() / ASSETS_DIR
        self._lock = threading.Lock()

    # -- what the app mounts --------------------------------------------------------------

    def arm_routes(self) -> list[tuple[str, dict[str, Handler]]]:
        """``(path pattern below WS, {method: handler})`` for the app's ARM router."""
        version = r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)"
        return [
            (r"/codes/(?P<name>[^/]+)/versions", {"GET": self.list_versions}),
            (version, {"GET": self.get_version, "PUT": self.put_version}),
            (version + r"/startPendingUpload", {"POST": self.start_pending_upload}),
        ]

    def blob_app(self, inner: ASGIApp) -> ASGIApp:
        """``inner`` with the blob endpoint (``/amlwaitblobs/…``) in front of it."""
        return _BlobEndpoint(self, inner)

    # -- ARM handlers ---------------------------------------------------------------------

    async def get_version(self, request: Request, params: Mapping[str, str]) -> Response:
        document = self._read_version(params)
        if document is None:
            raise _version_not_found(params)
        return JSONResponse(document)

    async def list_versions(self, request: Request, params: Mapping[str, str]) -> Response:
        wanted_hash = request.query_params.get("hash")
        wanted_version = request.query_params.get("hashVersion")
        # With ``hash``, every code name of the workspace is searched: azure-ai-ml asks
        # under a fresh random name and reuses whichever version the answer names.
        names = "*" if wanted_hash else _segment(params["name"])
        found: list[dict[str, Any]] = []
        for path in sorted(self._versions_dir(params).glob(f"{names}/*.json")):
            document = _read_json(path)
            if document is None:
                continue
            stored = document["properties"].get("properties") or {}
            if wanted_hash and stored.get("hash_sha256") != wanted_hash:
                continue
            if wanted_version and stored.get("hash_version") != wanted_version:
                continue
            found.append(document)
        return JSONResponse({"value": found})

    async def put_version(self, request: Request, params: Mapping[str, str]) -> Response:
        _check_name(params["name"], "code name")
        _check_name(params["version"], "code version")
        properties = _code_version_properties(await request.body())
        code_uri = properties.get("codeUri")
        if not isinstance(code_uri, str) or self.folder_of_code_uri(code_uri) is None:
            raise ArmError(
                400,
                "UserError",
                f"properties.codeUri {code_uri!r} is not a folder uploaded to this local "
                "workspace; upload it first (POST …/startPendingUpload, then PUT the files "
                "to the blobUri it answers) and give that blobUri/FOLDER.",
            )
        now = _timestamp()
        with self._lock:
            existing = self._read_version(params)
            if existing is not None and existing["properties"].get("codeUri") != code_uri:
                raise ArmError(
                    400,
                    "UserError",
                    f"Code version {params['name']}:{params['version']} already exists with "
                    "another codeUri; an asset's path cannot be changed: register a new version.",
                )
            created = existing is None
            system = dict(existing["systemData"]) if existing else _system_data(now)
            system.update(lastModifiedAt=now, lastModifiedBy="local", lastModifiedByType="User")
            document = {
                "id": _version_id(params),
                "name": params["version"],
                "type": CODE_VERSION_TYPE,
                "properties": {
                    "description": properties.get("description"),
                    "tags": properties.get("tags") or {},
                    "properties": properties.get("properties") or {},
                    "isAnonymous": bool(properties.get("isAnonymous", False)),
                    "isArchived": bool(properties.get("isArchived", False)),
                    "codeUri": code_uri,
                    "provisioningState": "Succeeded",
                },
                "systemData": system,
            }
            _write_json(self._version_path(params), document)
        return JSONResponse(document, status_code=201 if created else 200)

    async def start_pending_upload(self, request: Request, params: Mapping[str, str]) -> Response:
        _check_name(params["name"], "code name")
        _check_name(params["version"], "code version")
        body = await request.body()
        try:
            asked = json.loads(body) if body.strip() else {}
        except ValueError:
            raise ArmError(400, "UserError", "The request body is not valid JSON.") from None
        if not isinstance(asked, dict):
            raise ArmError(400, "UserError", "The request body must be a JSON object.")
        kind = asked.get("pendingUploadType", "TemporaryBlobReference")
        if kind != "TemporaryBlobReference":
            raise ArmError(
                400, "UserError", f"pendingUploadType {kind!r}: only TemporaryBlobReference."
            )
        upload_id = str(asked.get("pendingUploadId") or uuid.uuid4())
        container = "code-" + uuid.uuid4().hex
        signature = secrets.token_urlsafe(24)
        _write_json(
            self.root / "uploads" / f"{container}.json",
            {"sig": signature, "for": _version_id(params), "created": time.time()},
        )
        base = str(request.base_url).rstrip("/")
        blob_uri = f"{base}{BLOB_PREFIX}{container}"
        return JSONResponse(
            {
                "blobReferenceForConsumption": {
                    "blobUri": blob_uri,
                    "storageAccountArmId": None,
                    "credential": {
                        "credentialType": "SAS",
                        "sasUri": f"{blob_uri}?sv=2021-08-06&sr=c&sp=racwl&sig={signature}",
                    },
                },
                "pendingUploadId": upload_id,
                "pendingUploadType": "TemporaryBlobReference",
            }
        )

    # -- the blob side --------------------------------------------------------------------

    def folder_of_code_uri(self, code_uri: str) -> Path | None:
        """The local folder a ``codeUri`` served by this workspace names, else ``None``."""
        path = unquote(urlsplit(code_uri).path)
        if not path.startswith(BLOB_PREFIX):
            return None
        container, _, rest = path[len(BLOB_PREFIX) :].partition("/")
        if (
            not _CONTAINER.match(container)
            or not (self.root / "uploads" / container).with_suffix(".json").is_file()
        ):
            return None
        base = (self.root / "blobs" / container).resolve()
        folder = (base / rest).resolve()
        if folder != base and base not in folder.parents:
            return None
        return folder if folder.is_dir() else None

    def _authorized_container(self, container: str, signature: str) -> bool:
        if not _CONTAINER.match(container):
            return False
        upload = _read_json(self.root / "uploads" / f"{container}.json")
        if upload is None:
            return False
        return hmac.compare_digest(str(upload.get("sig", "")).encode(), signature.encode())

    def _blob_path(self, container: str, blob: str) -> Path | None:
        base = (self.root / "blobs" / container).resolve()
        target = (base / blob).resolve()
        return target if base in target.parents else None

    def _metadata_path(self, container: str, blob: str) -> Path:
        return self.root / "blob-metadata" / container / f"{quote(blob, safe='')}.json"

    # -- versions on disk -----------------------------------------------------------------

    def _versions_dir(self, params: Mapping[str, str]) -> Path:
        return self.root.joinpath(
            "versions", *(_segment(params[key]) for key in ("sub", "rg", "ws"))
        )

    def _version_path(self, params: Mapping[str, str]) -> Path:
        folder = self._versions_dir(params) / _segment(params["name"])
        return folder / f"{_segment(params['version'])}.json"

    def _read_version(self, params: Mapping[str, str]) -> dict[str, Any] | None:
        return _read_json(self._version_path(params))

    def resolve(self, code_id: str) -> Path:
        """The uploaded folder of code version ``code_id`` (its ARM id), or CodeAssetError."""
        found = _CODE_VERSION_ID.match(code_id)
        if found is None:
            raise CodeAssetError(f"properties.codeId {code_id!r} is not a code version's ARM id.")
        document = self._read_version(found.groupdict())
        if document is None:
            raise CodeAssetError(
                f"properties.codeId names code version {found['name']}:{found['version']}, "
                f"which is not registered in workspace '{found['ws']}': register it first "
                "(upload, then PUT the code version) or give the code folder as a file:// URI."
            )
        code_uri = str(document["properties"].get("codeUri") or "")
        folder = self.folder_of_code_uri(code_uri)
        if folder is None:
            raise CodeAssetError(
                f"Code version {found['name']}:{found['version']} points to {code_uri!r}, "
                "which this local workspace no longer holds."
            )
        return folder


def uploaded_code_folder(code_id: str, data_dir: Path) -> Path:
    """The folder a job's code-asset ``codeId`` runs from, in the workspace on ``data_dir``.

    Raises :class:`CodeAssetError` (unknown version, or content not held here)."""
    return CodeAssets(data_dir).resolve(code_id)


def is_code_version_id(code_id: str) -> bool:
    """Whether ``code_id`` is a code version's ARM id (``…/codes/NAME/versions/V``)."""
    return _CODE_VERSION_ID.match(code_id) is not None


def code_assets_of(backend: object) -> CodeAssets | None:
    """The code assets of a backend that keeps a data dir (the local workspace's store);
    ``None`` for others (the scripted workspace serves no code assets)."""
    from amlwait.workspace.store import JobStore

    return CodeAssets(backend.data_dir) if isinstance(backend, JobStore) else None


class _BlobEndpoint:
    """``/amlwaitblobs/{container}/{blob}``: block blobs under a container's SAS."""

    def __init__(self, assets: CodeAssets, inner: ASGIApp) -> None:
        self.assets = assets
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(BLOB_PREFIX):
            await self.inner(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self._answer(request)
        except ArmError as exc:
            response = _blob_error(exc.status_code, exc.code, exc.message)
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        container, _, blob = request.url.path[len(BLOB_PREFIX) :].partition("/")
        blob = unquote(blob)
        signature = request.query_params.get("sig", "")
        if not self.assets._authorized_container(container, signature):
            raise ArmError(
                403, "AuthenticationFailed", "The SAS signature does not match this container."
            )
        target = self.assets._blob_path(container, blob) if blob else None
        if target is None:
            raise ArmError(400, "InvalidUri", "Name a blob inside the container.")
        comp = request.query_params.get("comp")
        if request.method == "PUT" and comp == "metadata":
            if not target.is_file():
                raise ArmError(404, "BlobNotFound", "The specified blob does not exist.")
            _write_json(self.assets._metadata_path(container, blob), _meta_headers(request))
            return Response(status_code=200, headers=_blob_headers(target))
        if request.method == "PUT" and comp is None:
            if request.headers.get("x-ms-blob-type", "").lower() != "blockblob":
                raise ArmError(400, "InvalidHeaderValue", "x-ms-blob-type must be BlockBlob here.")
            await _receive_to(request, target)
            _write_json(self.assets._metadata_path(container, blob), _meta_headers(request))
            return Response(status_code=201, headers=_blob_headers(target))
        if request.method in ("HEAD", "GET") and comp is None:
            if not target.is_file():
                raise ArmError(404, "BlobNotFound", "The specified blob does not exist.")
            metadata = _read_json(self.assets._metadata_path(container, blob)) or {}
            headers = {**_blob_headers(target), **metadata}
            headers["Content-Length"] = str(target.stat().st_size)
            if request.method == "HEAD":
                return Response(status_code=200, headers=headers)
            return Response(target.read_bytes(), status_code=200, headers=headers)
        raise ArmError(405, "UnsupportedHttpVerb", f"{request.method} is not supported here.")


async def _receive_to(request: Request, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    received = 0
    try:
        with partial.open("wb") as out:
            async for chunk in request.stream():
                received += len(chunk)
                if received > MAX_BLOB_BYTES:
                    raise ArmError(
                        413,
                        "RequestBodyTooLarge",
                        f"A blob may be at most {MAX_BLOB_BYTES} bytes in the local workspace.",
                    )
                out.write(chunk)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _meta_headers(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower().startswith("x-ms-meta-")}


def _blob_headers(target: Path) -> dict[str, str]:
    stat = target.stat()
    return {
        "ETag": f'"0x{stat.st_mtime_ns:X}"',
        "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
        "x-ms-blob-type": "BlockBlob",
        "x-ms-version": "2021-08-06",
    }


def _blob_error(status: int, code: str, message: str) -> Response:
    # Azure Storage answers errors as XML with the code also in x-ms-error-code.
    body = (
        '<?xml version="1.0" encoding="utf-8"?><Error><Code>'
        f"{code}</Code><Message>{_xml_escape(message)}</Message></Error>"
    )
    return Response(
        body,
        status_code=status,
        media_type="application/xml",
        headers={"x-ms-error-code": code},
    )


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code_version_properties(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        raise ArmError(400, "UserError", "The request body is not valid JSON.") from None
    properties = document.get("properties") if isinstance(document, dict) else None
    if not isinstance(properties, dict):
        raise ArmError(400, "UserError", "A code version needs a 'properties' object.")
    unknown = sorted(set(properties) - _WRITABLE - _READ_ONLY)
    if unknown:
        raise ArmError(
            400,
            "UserError",
            f"properties.{unknown[0]} is not a CodeVersion property; "
            f"use {', '.join(sorted(_WRITABLE))}.",
        )
    for bag in ("properties", "tags"):
        values = properties.get(bag)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ArmError(400, "UserError", f"properties.{bag} must be an object.")
        # The spec's values are strings; azure-ai-ml sends hash_version as a number.
        properties[bag] = {str(k): None if v is None else str(v) for k, v in values.items()}
    return properties


def _check_name(value: str, what: str) -> None:
    if not _NAME.match(value):
        raise ArmError(
            400,
            "UserError",
            f"{value!r} is not a valid {what}: 1 to 255 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit.",
        )


def _version_id(params: Mapping[str, str]) -> str:
    return (
        f"/subscriptions/{params['sub']}/resourceGroups/{params['rg']}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{params['ws']}/codes/"
        f"{params['name']}/versions/{params['version']}"
    )


def _version_not_found(params: Mapping[str, str]) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"Code version {params['name']}:{params['version']} was not found in workspace "
        f"'{params['ws']}'.",
    )


def _system_data(now: str) -> dict[str, str]:
    return {"createdAt": now, "createdBy": "local", "createdByType": "User"}


def _timestamp() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _segment(part: str) -> str:
    """A path segment that cannot climb out of its folder (``.``/``..`` are escaped)."""
    quoted = quote(part, safe="-_~@+=,.")
    return quoted.replace(".", "%2E") if set(quoted) <= {"."} else quoted


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    partial.write_text(json.dumps(document), encoding="utf-8")
    os.replace(partial, path)


__all__ = [
    "BLOB_ACCOUNT",
    "CodeAssetError",
    "CodeAssets",
    "code_assets_of",
    "is_code_version_id",
    "uploaded_code_folder",
]
