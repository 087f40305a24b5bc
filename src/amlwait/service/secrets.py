"""Encryption at rest of the Azure DevOps AuthToken a wait carries.

A token is sealed with AES-256-GCM under a key taken from ``AMLWAIT_SERVICE_SECRET``::

    blob = b"\\x01" || nonce (12 random bytes) || AES-GCM(key, nonce, token, aad=context)

``context`` (the wait id) is authenticated too, so a sealed token copied onto another row
does not open there. The secret is either the base64 of exactly 32 bytes (make one with
:func:`generate_secret`) or any other passphrase, stretched with scrypt under a fixed salt
(the same passphrase must give the same key on every replica). Foot-gun: a short passphrase
is only as strong as it is long; prefer a generated secret.

Nothing here logs, and ``repr`` of a cipher never shows the key.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from amlwait.azureml.credentials import TokenProvider
from amlwait.errors import InputError
from amlwait.redact import REDACTOR

SECRET_ENV = "AMLWAIT_SERVICE_SECRET"

_VERSION = b"\x01"
_NONCE_BYTES = 12
_KEY_BYTES = 32
_SCRYPT_SALT = b"amlwait-service/auth-token-key/v1"
MIN_PASSPHRASE_CHARS = 16  # as for the service key


class SecretKeyError(InputError):
    """A sealed token does not open with this key (wrong secret, or a damaged blob)."""


def generate_secret() -> str:
    """A fresh random secret, suitable for ``AMLWAIT_SERVICE_SECRET``."""
    return base64.b64encode(os.urandom(_KEY_BYTES)).decode("ascii")


def derive_key(secret: str) -> bytes:
    """The 32-byte key for ``secret``: its base64 decoding if that is 32 bytes, else scrypt."""
    if not secret:
        raise InputError(
            f"{SECRET_ENV} is empty: set it to a secret (e.g. 32 random bytes, base64)"
        )
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == _KEY_BYTES:
        return raw
    if len(secret) < MIN_PASSPHRASE_CHARS:
        raise InputError(
            f"{SECRET_ENV} is too short ({len(secret)} characters): use at least "
            f"{MIN_PASSPHRASE_CHARS}, or 32 random bytes in base64"
        )
    return Scrypt(salt=_SCRYPT_SALT, length=_KEY_BYTES, n=2**14, r=8, p=1).derive(
        secret.encode("utf-8")
    )


class TokenCipher:
    """Seals and opens tokens with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise ValueError(f"the key must be {_KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_secret(cls, secret: str) -> TokenCipher:
        return cls(derive_key(secret))

    def __repr__(self) -> str:
        return "TokenCipher(key=<redacted>)"

    def seal(self, token: str, *, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, token.encode("utf-8"), context.encode("utf-8"))
        return _VERSION + nonce + sealed

    def open(self, blob: bytes, *, context: str) -> str:
        blob = bytes(blob)
        if blob[:1] != _VERSION or len(blob) < 1 + _NONCE_BYTES:
            raise SecretKeyError("a stored token has an unknown format; was it written by amlwait?")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, context.encode("utf-8"))
        except InvalidTag:
            raise SecretKeyError(
                f"a stored token does not open with this key: {SECRET_ENV} differs from the "
                "secret the store was written with"
            ) from None
        return plain.decode("utf-8")


def cipher_for(secret_key: str | None) -> TokenCipher:
    """The cipher for ``secret_key``, or for ``$AMLWAIT_SERVICE_SECRET`` when it is None."""
    secret = secret_key if secret_key is not None else os.environ.get(SECRET_ENV)
    if secret is None:
        raise InputError(
            f'set {SECRET_ENV} (e.g. to the output of `python -c "import base64,os; '
            'print(base64.b64encode(os.urandom(32)).decode())"`) to encrypt AuthTokens at rest'
        )
    return TokenCipher.from_secret(secret)


class RegisteredToken:
    """A token provider whose every token is registered with the process-wide redactor, so
    an Azure error message that echoes it (or its Authorization header) never reaches a
    log line, a feed line or a stored reason. Wraps ``inner``; invalidation passes through.
    """

    def __init__(self, inner: TokenProvider) -> None:
        self._inner = inner

    async def token(self) -> str:
        value = await self._inner.token()
        REDACTOR.register(value)
        return value

    def invalidate(self) -> bool:
        return self._inner.invalidate()
