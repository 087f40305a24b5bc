"""ARM error answers: ``{"error": {"code": ..., "message": ...}}`` and nothing else.

Every refusal the local workspace sends goes through :class:`ArmError`, so a client
never sees an HTML page or a traceback. ``ArmError`` is raised inside request handling
and turned into a JSON response by the app; :func:`error_response` builds the same
response directly (the fault injector uses it).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse


class ArmError(Exception):
    """A request the workspace refuses, with the HTTP status and ARM error code to answer."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return error_response(self.status_code, self.code, self.message, headers=self.headers)


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status_code,
        headers=dict(headers or {}),
    )


def format_seconds(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds when integral, else the decimal (tests use 0.05)."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return repr(float(seconds))
