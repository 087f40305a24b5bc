"""A local, Azure-ML-compatible workspace: the ARM jobs API on loopback.

- :class:`LocalWorkspace` stores jobs in SQLite and really runs command jobs as local
  processes (``amlwait workspace serve`` runs one).
- :class:`ScriptedWorkspace` answers from status timelines on an injectable clock, with
  injected faults and ARM throttling, for tests and benchmarks.

Both serve the same app (:mod:`amlwait.workspace.app`). The classes are imported lazily,
so importing this package (the CLI does) does not load the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amlwait.workspace.local import LocalWorkspace
    from amlwait.workspace.scripted import ScriptedWorkspace

__all__ = ["LocalWorkspace", "ScriptedWorkspace"]


def __getattr__(name: str) -> Any:
    if name == "LocalWorkspace":
        from amlwait.workspace.local import LocalWorkspace

        return LocalWorkspace
    if name == "ScriptedWorkspace":
        from amlwait.workspace.scripted import ScriptedWorkspace

        return ScriptedWorkspace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
