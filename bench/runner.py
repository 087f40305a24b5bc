"""Running each strategy in its own child process, and measuring the child."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def run_child(config: dict[str, Any]) -> dict[str, Any]:
    """Run one strategy in a child; its result plus the child's own CPU time and peak RSS.

    ``os.wait4`` reaps exactly this child and returns its resource usage, so children
    running side by side do not mix their numbers (``RUSAGE_CHILDREN`` would).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.child", json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.append(process.stderr.read()))  # type: ignore[union-attr]
    drain.start()
    output = process.stdout.read()  # type: ignore[union-attr]
    drain.join()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        result: dict[str, Any] = {
            "strategy": config["strategy"],
            "error": f"child exited {process.returncode}: {errors[0][-2000:] if errors else ''}",
        }
    else:
        result = json.loads(lines[-1])
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # ru_maxrss is KiB on Linux
    return result


def run_all(configs: list[dict[str, Any]], parallel: int) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(run_child, configs))
