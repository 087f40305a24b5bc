"""Start-up time of the CLI against importing azure-ai-ml (median of 5 each)."""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RUNS = 5


def _median_seconds(command: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure() -> dict[str, Any]:
    script = Path(sys.executable).with_name("amlwait")
    amlwait = [str(script)] if script.exists() else [sys.executable, "-m", "amlwait"]
    result: dict[str, Any] = {
        "amlwait --help": round(_median_seconds([*amlwait, "--help"]), 3),
        "amlwait wait --help": round(_median_seconds([*amlwait, "wait", "--help"]), 3),
        "python -c pass": round(_median_seconds([sys.executable, "-c", "pass"]), 3),
    }
    if importlib.util.find_spec("azure.ai.ml") is None:
        result["import azure.ai.ml"] = None
        result["note"] = "azure-ai-ml is not installed: no comparison"
    else:
        azure = _median_seconds([sys.executable, "-c", "import azure.ai.ml"])
        result["import azure.ai.ml"] = round(azure, 3)
        result["ratio import azure.ai.ml / amlwait wait --help"] = round(
            azure / result["amlwait wait --help"], 1
        )
    return result
