"""Bearer tokens for ARM: a static one from the environment, or azure-identity's.

``AMLWAIT_ACCESS_TOKEN`` wins when set (a token from ``az account get-access-token``, or
any token for the local workspace). Otherwise ``DefaultAzureCredential`` — so AzureCLI@2,
managed identity and workload identity all work — imported only when first needed.
A long wait asks for a token before every request; azure-identity caches it and
refreshes it ahead of expiry, and after a 401 we drop our copy and ask again once.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

from amlwait.errors import AuthenticationError

TOKEN_ENV = "AMLWAIT_ACCESS_TOKEN"
LOCAL_PLACEHOLDER_TOKEN = "amlwait-local-workspace"
_REFRESH_MARGIN = 300.0


class TokenProvider(Protocol):
    async def token(self) -> str:
        """A bearer token for the ARM endpoint."""
        ...

    def invalidate(self) -> bool:
        """Forget the current token after a 401; False when no fresh one can be had."""
        ...


class StaticToken:
    """A fixed token (it cannot be refreshed)."""

    def __init__(self, value: str) -> None:
        if not value.strip():
            raise AuthenticationError(f"{TOKEN_ENV} is set but empty; unset it or give a token")
        self._value = value.strip()

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
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        access = self._credential.get_token(self.scope)
        return access.token, float(access.expires_on)

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.time() > self._expires_on - _REFRESH_MARGIN:
                try:
                    self._token, self._expires_on = await asyncio.to_thread(self._fetch)
                except Exception as error:
                    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                    raise AuthenticationError(
                        f"could not get an Azure token for {self.scope} "
                        f"({type(error).__name__}: {first_line[:300]}); sign in with "
                        f"'az login', run inside AzureCLI@2, or set {TOKEN_ENV}"
                    ) from None
            assert self._token is not None
            return self._token

    def invalidate(self) -> bool:
        self._token = None
        return True


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def default_token_provider(endpoint: str) -> TokenProvider:
    """The environment's token, a placeholder for a local workspace, or azure-identity."""
    value = os.environ.get(TOKEN_ENV)
    if value is not None:
        return StaticToken(value)
    if is_loopback(endpoint):
        # The local workspace accepts any bearer token unless started with --token.
        return StaticToken(LOCAL_PLACEHOLDER_TOKEN)
    return AzureIdentityToken(endpoint.rstrip("/") + "/.default")
