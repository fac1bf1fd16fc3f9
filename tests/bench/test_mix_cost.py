"""``python -m bench mix``: what the mix cost per request in every process, and the cores busy."""

from __future__ import annotations

from bench.report import mix_cost, render_mix_cost


def _result(**mixed: object) -> dict[str, object]:
    return {"started_at": "2026-12-03T10:00:00+00:00", "scenarios": {"mixed": mixed}}


def test_every_process_counts_and_the_sum_gives_the_cores_busy() -> None:
    cost = mix_cost(
        _result(
            requests=8000,
            rps=800.0,
            sustained=True,
            latency_ms={"p95": 24.0},
            processes={
                "products": {"cpu_ms_per_request": 0.4},
                "gateway": {"cpu_ms_per_request": 0.3},
                # started for the uncached scenarios, idle in the mix: not part of its cost
                "products_nocache": {"cpu_ms_per_request": 0.003},
            },
            postgres_cpu_seconds=2.0,
            wrk_cpu_seconds=0.8,
        )
    )
    assert cost is not None
    assert cost["cpu_ms_per_request"] == {
        "products": 0.4,
        "gateway": 0.3,
        "postgres": 0.25,
        "wrk": 0.1,
    }
    assert cost["total_cpu_ms_per_request"] == 1.05
    assert cost["cores_busy"] == 0.84  # 1.05 ms per request at 800 req/s
    assert "800 req/s (held" in render_mix_cost(cost)


def test_a_run_without_the_mix_says_so() -> None:
    assert mix_cost({"scenarios": {}}) is None
    assert render_mix_cost(None) == "no mixed scenario in this run"
