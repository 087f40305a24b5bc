"""Serving an ASGI app with uvicorn from a background thread, on a socket we bind.

Binding the socket ourselves (port 0 picks a free port) means the address is known
before the server starts and there is no race over a port. ``start`` returns once uvicorn
accepts connections; ``stop`` asks it to exit and joins the thread. HTTPS when a
certificate and key are given.

Listening beyond loopback without a token would expose the workspace (which runs shell
commands) to the network: :func:`check_exposure` refuses it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from amlwait.workspace.faults import dropping_connection

START_TIMEOUT_SECONDS = 10.0


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    if token is None and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host}, which is not a loopback address, without a "
            "token: anyone who can reach it could run commands; set a token or use 127.0.0.1"
        )


class _HideDeliberateDrops(logging.Filter):
    """Hide uvicorn's complaint about the incomplete answer a "drop" fault sends on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not dropping_connection.get()


_UVICORN_LOGGER = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _HideDeliberateDrops) for f in _UVICORN_LOGGER.filters):
    _UVICORN_LOGGER.addFilter(_HideDeliberateDrops())


class ServerThread:
    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("HTTPS needs both a certificate and a key file")
        self.app = app
        self.host = host
        self.requested_port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._failure: BaseException | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port listened on (kept after ``stop``); an error before ``start``."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls_cert is not None else "http"
        host = self.host.strip("[]")
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(self.tls_cert) if self.tls_cert else None,
            ssl_keyfile=str(self.tls_key) if self.tls_key else None,
            timeout_graceful_shutdown=2,
        )
        config.load()  # certificate problems surface here, in the caller's thread
        self._socket = _bind(self.host, self.requested_port)
        self._port = int(self._socket.getsockname()[1])
        self._server = uvicorn.Server(config)
        self._failure = None
        self._thread = threading.Thread(target=self._serve, name="amlwait-workspace", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the local workspace server did not start: {self._failure}")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._socket = None
        self._server = None
        self._thread = None

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # reported by start(); a thread cannot raise to it
            self._failure = exc


def _bind(host: str, port: int) -> socket.socket:
    bare = host.strip("[]")
    infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
