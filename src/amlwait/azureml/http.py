"""The one way amlwait builds its HTTP clients for Azure: ``amlwait/VERSION`` as the user
agent, redirects never followed (a redirect could carry the bearer token to another
host), one time limit for every request."""

from __future__ import annotations

import httpx

from amlwait import __version__


def amlwait_client(
    request_timeout: float,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    limits: httpx.Limits | None = None,
) -> httpx.AsyncClient:
    """An async client bounded by ``request_timeout`` seconds a request; ``limits`` None
    keeps httpx's own pool limits (100 connections, 20 kept alive)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(request_timeout),
        transport=transport,
        headers={"User-Agent": f"amlwait/{__version__}"},
        limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
    )
