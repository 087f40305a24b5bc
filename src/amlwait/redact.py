"""Where a secret may go, decided in one place: loopback by address, tokens scrubbed from text.

- :func:`is_loopback_host` / :func:`is_loopback_url` decide by IP address after parsing:
  ``127.0.0.0/8``, ``::1`` and the exact name ``localhost`` are loopback;
  ``127.0.0.1.attacker.example`` (a DNS name that merely starts with ``127.``) is not.
- :func:`check_token` refuses a token that could not travel in an HTTP header as is (control
  characters, non-ASCII), naming only where it came from, never its value.
- :class:`Redactor` replaces every registered secret (and the forms it travels in: the
  base64 of ``":" + token`` used by Basic auth) with ``***`` in any text before it is printed,
  logged, sent to a feed or written to a report. It holds at most ``capacity`` secrets
  (oldest forgotten first), so a long-running service does not grow without bound.
  :data:`REDACTOR` is the process-wide instance every output path uses.
"""

from __future__ import annotations

import base64
import ipaddress
import threading
from collections import OrderedDict
from urllib.parse import urlsplit

from amlwait.errors import InputError

MASK = "***"

# A secret shorter than this is not scrubbed: replacing "a" everywhere would mangle every
# message while protecting nothing.
_MIN_SECRET_LENGTH = 6


def is_loopback_host(host: str) -> bool:
    """True when ``host`` (a name or an IP literal, brackets allowed) is a loopback address."""
    host = host.strip().strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is a loopback address (see :func:`is_loopback_host`)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host is not None and is_loopback_host(host)


def check_token(token: str, *, source: str) -> str:
    """Return ``token`` if it can be sent in an HTTP header; otherwise one-line InputError.

    ``source`` names where the token came from (an environment variable, a header) so the
    user can fix it; the message never contains the token itself.
    """
    if not token.strip():
        raise InputError(f"{source} is empty; set it to a valid access token")
    for character in token:
        code = ord(character)
        if code < 0x20 or code == 0x7F:
            raise InputError(
                f"{source} contains a control character (a newline?); set it to the token alone"
            )
        if code > 0x7E:
            raise InputError(
                f"{source} contains a non-ASCII character; set it to the token alone"
            )
    return token


def _basic_form(secret: str) -> str:
    """How ``secret`` travels as a Basic-auth credential with an empty user name."""
    return base64.b64encode(b":" + secret.encode("utf-8", "replace")).decode("ascii")


class Redactor:
    """Replaces registered secrets with ``***`` in text. Thread-safe; bounded."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def register(self, secret: str | None) -> None:
        """Remember ``secret`` (and its Basic-auth form) so :meth:`scrub` hides it."""
        if not secret or len(secret) < _MIN_SECRET_LENGTH:
            return
        with self._lock:
            for form in (secret, _basic_form(secret)):
                self._secrets[form] = None
                self._secrets.move_to_end(form)
            while len(self._secrets) > self._capacity:
                self._secrets.popitem(last=False)

    def forget(self, secret: str | None) -> None:
        """Stop scrubbing ``secret`` (a finished wait's token, say)."""
        if not secret:
            return
        with self._lock:
            self._secrets.pop(secret, None)
            self._secrets.pop(_basic_form(secret), None)

    def scrub(self, text: str, *extra: str | None) -> str:
        """``text`` with every registered secret, and each of ``extra``, replaced by ``***``."""
        with self._lock:
            secrets = list(self._secrets)
        secrets.extend(s for s in extra if s and len(s) >= _MIN_SECRET_LENGTH)
        # Longest first, so a secret that contains another is masked whole.
        for secret in sorted(secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __len__(self) -> int:
        with self._lock:
            return len(self._secrets)


REDACTOR = Redactor()


def scrub(text: str, *extra: str | None) -> str:
    """:meth:`Redactor.scrub` of the process-wide :data:`REDACTOR`."""
    return REDACTOR.scrub(text, *extra)
