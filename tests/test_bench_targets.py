"""The benchmark's target lines say met or missed from the numbers they are given."""

from __future__ import annotations

from typing import Any

from bench.report import targets


def run(n: int, **rows: dict[str, Any]) -> dict[str, Any]:
    return {
        "n": n,
        "seed": 1,
        "max_run": 3600.0,
        "scale": 1.0,
        "results": [{"strategy": name, **row} for name, row in rows.items()],
    }


def test_requests_per_job_must_not_grow_with_n_for_any_amlwait_strategy() -> None:
    lines = targets(
        [
            run(100, **{"amlwait-list": {"requests": 500}, "service": {"requests": 210}}),
            run(1_000, **{"amlwait-list": {"requests": 6_000}, "service": {"requests": 2_050}}),
            run(
                10_000,
                **{
                    "amlwait-list": {"requests": 30_000},
                    "service": {"requests": 20_000},
                    "amlwait-pipeline": {"requests": 9, "error": "PipelineRefused: …"},
                },
            ),
        ]
    )
    assert (
        "amlwait-list: requests per job 5.00 → 6.00 → 3.00 from N=100 to N=10,000 "
        "(target flat or falling: missed)" in lines
    )
    # A row that ended in an error says nothing about its requests per job.
    assert not any(line.startswith("amlwait-pipeline") for line in lines)
    # 2.10 → 2.05 → 2.00: falling.
    assert any(line.startswith("service: requests per job") and "met" in line for line in lines)


def test_the_service_at_10000_is_held_to_12_times_its_cpu_at_1000_and_200_mb() -> None:
    def service(cpu: float, rss: float) -> dict[str, Any]:
        return {"service": {"requests": 1, "cpu_s": cpu, "peak_rss_mb": rss}}

    within = targets([run(1_000, **service(25.0, 90.0)), run(10_000, **service(300.0, 199.0))])
    beyond = targets([run(1_000, **service(25.0, 90.0)), run(10_000, **service(301.0, 201.0))])

    assert "N=10,000 service: peak RSS 199.0 MB (target ≤ 200: met)" in within
    assert any("= 12.0× its N=1,000 CPU (target ≤ 12×: met)" in line for line in within)
    assert "N=10,000 service: peak RSS 201.0 MB (target ≤ 200: missed)" in beyond
    assert any("= 12.0× its N=1,000 CPU (target ≤ 12×: missed)" in line for line in beyond)
