"""What a long-running command needs at the edges of its process.

- :func:`run_with_signals`: its asyncio loop, with SIGINT/SIGTERM calling a stop hook
  instead of killing it (so it can end in a result: reports written, jobs cancelled when
  asked);
- :func:`check_output_path`: a file it will write, refused before the work starts;
- :func:`write_text_atomically`, :func:`write_json_atomically`: files written whole, so a
  reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from amlwait.errors import InputError

T = TypeVar("T")


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` so that a reader sees the old file or the new one, never half.

    The file gets mode ``0o666`` less the umask, like any file the user's tools write
    (reports and manifests are no secrets; ``mkstemp``'s ``0o600`` hid them from the
    group). The temporary file beside it is created with ``O_EXCL`` under a random name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_beside(path: Path) -> tuple[int, str]:
    """A new file ``.NAME.RANDOM.tmp`` next to ``path``, opened for writing, its mode left
    to the umask; a name taken already (a 1-in-2**48 chance) is tried again, 100 times."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def write_json_atomically(path: Path, document: Any) -> None:
    write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def check_output_path(flag: str, value: str | None) -> Path | None:
    """Fail now, not after a two-day wait, when a report cannot be written."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise InputError(f"{flag} {value}: is a directory; give a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"{flag} {value}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{flag} {value}: the folder {parent} is not writable")
    return path


def run_with_signals(
    main: Callable[[], Coroutine[Any, Any, T]], on_signal: Callable[[], None]
) -> T:
    """Run ``main`` with SIGINT/SIGTERM calling ``on_signal`` instead of killing us."""

    async def runner() -> T:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Not possible off the main thread or on some platforms: then Ctrl-C kills.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal)
        try:
            return await main()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    return asyncio.run(runner())
