"""Bearer tokens for ARM: a static one from the environment, or azure-identity's.

``AMLWAIT_ACCESS_TOKEN`` wins when set (a token from ``az account get-access-token``, or
any token for the local workspace). Otherwise ``DefaultAzureCredential`` — so AzureCLI@2,
managed identity and workload identity all work — imported only when first needed.
A long wait asks for a token before every request; azure-identity caches it and
refreshes it ahead of expiry, and after a 401 we drop our copy and ask again once.

Every token is checked before it is used (:func:`amlwait.redact.check_token`: no control
characters, ASCII only — one line and exit 2 otherwise, never an error deep in httpx) and
registered with :data:`amlwait.redact.REDACTOR`, so no message printed, logged or written
to a report can carry it. azure-identity's own log (a dozen lines per failed credential)
stays silent unless ``--debug`` asked for it (:func:`show_azure_identity_logs`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Protocol

from amlwait.errors import AuthenticationError
from amlwait.redact import REDACTOR, check_token, is_loopback_url, scrub

TOKEN_ENV = "AMLWAIT_ACCESS_TOKEN"
LOCAL_PLACEHOLDER_TOKEN = "amlwait-local-workspace"
_REFRESH_MARGIN = 300.0
_AZURE_LOGGERS = ("azure.identity", "azure.core")
_azure_logs_visible = False


def show_azure_identity_logs(visible: bool) -> None:
    """Let azure-identity's log through (``--debug``) or keep it quiet (the default)."""
    global _azure_logs_visible
    _azure_logs_visible = visible


def _quiet_azure_logs() -> None:
    if _azure_logs_visible:
        return
    for name in _AZURE_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False


class TokenProvider(Protocol):
    async def token(self) -> str:
        """A bearer token for the ARM endpoint."""
        ...

    def invalidate(self) -> bool:
        """Forget the current token after a 401; False when no fresh one can be had."""
        ...


class StaticToken:
    """A fixed token (it cannot be refreshed)."""

    def __init__(self, value: str, *, source: str = TOKEN_ENV) -> None:
        if not value.strip():
            raise AuthenticationError(f"{source} is set but empty; unset it or give a token")
        self._value = check_token(value.strip(), source=source)
        REDACTOR.register(self._value)

    async def token(self) -> str:
        return self._value

    def invalidate(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "StaticToken(***)"


class AzureIdentityToken:
    """``DefaultAzureCredential`` (or any azure-identity credential), cached until close
    to expiry. The blocking ``get_token`` runs in a thread."""

    def __init__(self, scope: str, credential: Any | None = None) -> None:
        self.scope = scope
        self._credential = credential
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = asyncio.Lock()

    def _fetch(self) -> tuple[str, float]:
        _quiet_azure_logs()
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        access = self._credential.get_token(self.scope)
        return access.token, float(access.expires_on)

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.time() > self._expires_on - _REFRESH_MARGIN:
                try:
                    token, self._expires_on = await asyncio.to_thread(self._fetch)
                except Exception as error:
                    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                    raise AuthenticationError(
                        f"could not get an Azure token for {self.scope} "
                        f"({type(error).__name__}: {scrub(first_line)[:300]}); sign in with "
                        f"'az login', run inside AzureCLI@2, or set {TOKEN_ENV}"
                    ) from None
                self._token = check_token(token, source="the token azure-identity returned")
                REDACTOR.register(self._token)
            assert self._token is not None
            return self._token

    def invalidate(self) -> bool:
        self._token = None
        return True


def is_loopback(url: str) -> bool:
    """True when the URL's host is a loopback address, decided by address after parsing
    (``127.0.0.1.attacker.example`` is not loopback); see :func:`amlwait.redact.is_loopback_url`.
    """
    return is_loopback_url(url)


def default_token_provider(endpoint: str) -> TokenProvider:
    """The environment's token, a placeholder for a local workspace, or azure-identity."""
    value = os.environ.get(TOKEN_ENV)
    if value is not None:
        return StaticToken(value)
    if is_loopback(endpoint):
        # The local workspace accepts any bearer token unless started with --token.
        return StaticToken(LOCAL_PLACEHOLDER_TOKEN)
    return AzureIdentityToken(endpoint.rstrip("/") + "/.default")
