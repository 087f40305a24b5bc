"""Train one circuit's model: a linear regression of the circuit's load on its sensors.

The sensor history is synthetic here (seeded by plant and circuit, so every run of a
circuit sees the same data); in production this reads the circuit's sensor table.
Writes ``model.json`` and ``metrics.json`` to the job's outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

FEATURES = ("temperature", "pressure", "flow")


def synthetic_history(plant: str, circuit: str, rows: int) -> tuple[list[list[float]], list[float]]:
    seed = int(hashlib.sha256(f"{plant}/{circuit}".encode()).hexdigest()[:8], 16)
    rng = random.Random(seed)
    true_weights = [rng.uniform(-2, 2) for _ in FEATURES]
    bias = rng.uniform(10, 50)
    x, y = [], []
    for _ in range(rows):
        sample = [rng.gauss(0, 1) for _ in FEATURES]
        x.append(sample)
        y.append(bias + sum(w * v for w, v in zip(true_weights, sample)) + rng.gauss(0, 0.5))
    return x, y


def fit(x: list[list[float]], y: list[float], epochs: int = 150, rate: float = 0.05) -> list[float]:
    """Least squares by mini-batch gradient descent; returns [bias, w1, w2, w3]."""
    weights = [0.0] * (len(FEATURES) + 1)
    for _ in range(epochs):
        for start in range(0, len(x), 64):
            grad = [0.0] * len(weights)
            batch = range(start, min(start + 64, len(x)))
            for i in batch:
                error = weights[0] + sum(w * v for w, v in zip(weights[1:], x[i])) - y[i]
                grad[0] += error
                for j, v in enumerate(x[i]):
                    grad[j + 1] += error * v
            for j in range(len(weights)):
                weights[j] -= rate * grad[j] / len(batch)
    return weights


def rmse(weights: list[float], x: list[list[float]], y: list[float]) -> float:
    total = 0.0
    for sample, target in zip(x, y):
        prediction = weights[0] + sum(w * v for w, v in zip(weights[1:], sample))
        total += (prediction - target) ** 2
    return math.sqrt(total / len(x))


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("plant", "circuit", "table", "model", "metrics"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--rows", type=int, default=4000)
    args = parser.parse_args()
    started = time.time()
    print(f"training {args.plant}/{args.circuit} on {args.rows} rows of {args.table}", flush=True)
    if args.table.endswith("_missing"):
        # How the demo's --fail shows a failing circuit: its sensor table does not exist.
        print(f"error: sensor table {args.table} does not exist", file=sys.stderr)
        return 1
    x, y = synthetic_history(args.plant, args.circuit, args.rows)
    split = int(len(x) * 0.8)
    weights = fit(x[:split], y[:split])
    metrics = {
        "plant": args.plant,
        "circuit": args.circuit,
        "rows": args.rows,
        "train_rmse": round(rmse(weights, x[:split], y[:split]), 4),
        "test_rmse": round(rmse(weights, x[split:], y[split:]), 4),
        "seconds": round(time.time() - started, 2),
    }
    Path(args.model).mkdir(parents=True, exist_ok=True)
    Path(args.metrics).mkdir(parents=True, exist_ok=True)
    model = {"features": FEATURES, "bias": weights[0], "weights": weights[1:]}
    (Path(args.model) / "model.json").write_text(json.dumps(model, indent=2))
    (Path(args.metrics) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
