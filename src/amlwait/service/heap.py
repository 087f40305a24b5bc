"""Giving freed heap memory back to the operating system.

A follow's progress document, a listing and the store's rows are built and dropped again
and again; glibc keeps what was freed inside its arenas (one per thread that allocated,
and the store runs in worker threads), so the process's resident memory creeps up to its
busiest moment and stays there. :func:`trim` asks glibc to return the free pages
(``malloc_trim``); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

__all__ = ["trim"]


def _load() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return function


_MALLOC_TRIM = _load()


def trim() -> bool:
    """Return the free heap pages to the system; whether this C library could."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
