"""Where a child's memory goes at its peak: ``BENCH_TRACEMALLOC=FILE python -m bench …``.

With the variable set, each child traces its allocations (``tracemalloc``, ``FRAMES`` frames
deep; ``BENCH_TRACEMALLOC_FRAMES`` sets it) and a thread keeps the snapshot taken when the
traced total was highest (a new one whenever the total grew by 2 % since the last). When
the child ends, ``FILE`` (``{strategy}`` and ``{n}`` are filled in) gets the top allocation
sites by file and line, and the traced total split by who allocated it: the first frame,
newest first, in ``src/amlwait/service``, elsewhere in ``src/amlwait``, in ``bench/``, or
anywhere else (libraries, the standard
library). Tracing costs CPU and memory: numbers from such a run are not the benchmark's.
"""

from __future__ import annotations

import ctypes
import os
import threading
import tracemalloc
from collections import defaultdict
from pathlib import Path

FRAMES = int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "30"))
TOP = 40
GROWTH = 1.02


class Profiler:
    def __init__(self, path: str) -> None:
        self.path = path
        self.best: tracemalloc.Snapshot | None = None
        self.best_size = 0
        self.best_rss = 0.0
        self.max_rss = 0.0
        self.malloc_at_max_rss = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        tracemalloc.start(FRAMES)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            rss = _rss_mb()
            if rss > self.max_rss:
                self.max_rss, self.malloc_at_max_rss = rss, _mallinfo()
            current, _ = tracemalloc.get_traced_memory()
            if current > self.best_size * GROWTH:
                self.best = tracemalloc.take_snapshot()
                self.best_size = current
                self.best_rss = rss

    def finish(self, strategy: str, n: int) -> None:
        self._stop.set()
        self._thread.join()
        _, peak = tracemalloc.get_traced_memory()
        lines = [
            f"traced at the kept snapshot: {self.best_size / 1e6:.1f} MB "
            f"(RSS then {self.best_rss:.1f} MB); traced peak {peak / 1e6:.1f} MB; "
            f"RSS max seen {self.max_rss:.1f} MB",
            f"C heap at the RSS max (glibc mallinfo2): {self.malloc_at_max_rss}",
        ]
        if self.best is not None:
            lines += _report(self.best)
        target = Path(self.path.format(strategy=strategy, n=n))
        target.write_text("\n".join(lines) + "\n")
        tracemalloc.stop()


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mallinfo() -> str:
    """glibc's heap totals: sbrk/arena bytes, in use, free inside arenas, mmapped."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return "unavailable"
    mb = 1e6
    return (
        f"arenas {info.arena / mb:.1f} MB, in use {info.uordblks / mb:.1f} MB, "
        f"free in arenas {info.fordblks / mb:.1f} MB, mmapped {info.hblkhd / mb:.1f} MB"
    )


def _owner(filename: str) -> str:
    if "/amlwait/service/" in filename:
        return "amlwait.service"
    if "/src/amlwait/" in filename or "/site-packages/amlwait/" in filename:
        return "amlwait (not service)"
    if "/bench/" in filename:
        return "bench"
    return ""


def _report(snapshot: tracemalloc.Snapshot) -> list[str]:
    snapshot = snapshot.filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    )
    by_owner: dict[str, int] = defaultdict(int)
    by_owner_site: dict[tuple[str, str], int] = defaultdict(int)
    for trace in snapshot.traces:
        owner, site = "other", ""
        for frame in reversed(trace.traceback):  # newest first
            found = _owner(frame.filename)
            if found:
                owner, site = found, f"{_short(frame.filename)}:{frame.lineno}"
                break
        by_owner[owner] += trace.size
        by_owner_site[owner, site] += trace.size
    lines = ["", "by owner (first frame of ours, newest first):"]
    for owner, size in sorted(by_owner.items(), key=lambda item: -item[1]):
        lines.append(f"  {size / 1e6:8.2f} MB  {owner}")
    lines += ["", "top sites of ours (the first frame of ours in each traceback):"]
    ranked = sorted(by_owner_site.items(), key=lambda item: -item[1])[:TOP]
    for (owner, site), size in ranked:
        lines.append(f"  {size / 1e6:8.2f} MB  {owner:22} {site}")
    lines += ["", "top allocating lines (any file):"]
    for stat in snapshot.statistics("lineno")[:TOP]:
        frame = stat.traceback[0]
        lines.append(
            f"  {stat.size / 1e6:8.2f} MB  {stat.count:8d}  {_short(frame.filename)}:{frame.lineno}"
        )
    return lines


def _short(filename: str) -> str:
    for marker in ("/src/", "/site-packages/", "/bench/", "/lib/python"):
        if marker in filename:
            return filename[filename.index(marker) + 1 :]
    return filename


def from_environment() -> Profiler | None:
    path = os.environ.get("BENCH_TRACEMALLOC")
    if not path:
        return None
    profiler = Profiler(path)
    profiler.start()
    return profiler


__all__ = ["Profiler", "from_environment"]
