"""bench.report's issue-31 targets over a result with the event side: what counts as the
platform's CPU (not the SMTP sink, not PostgreSQL or wrk), and the worker judged per mail."""

from __future__ import annotations

from typing import Any

from bench import report


def _order(**cpu: float) -> dict[str, Any]:
    requests = 1000
    return {
        "requests": requests,
        "rps": 320.0,
        "error_count": 0,
        "latency_ms": {"p50": 10, "p95": 20, "p99": 30},
        "mails_sent": 500,
        "postgres_cpu_seconds": 9.0,
        "wrk_cpu_seconds": 1.0,
        "processes": {
            name: {
                "cpu_seconds": seconds,
                "cpu_ms_per_request": 1000 * seconds / requests,
                "peak_rss_mb": 90.0,
                "processes": 1,
            }
            for name, seconds in cpu.items()
        },
    }


def _targets(scenario: dict[str, Any]) -> dict[str, Any]:
    result = {"baselines": {}, "scenarios": {"order": scenario}}
    return {t["target"]: t for t in report.targets(result)}


def test_the_platform_total_leaves_out_the_sink_and_counts_the_broker() -> None:
    order = _order(
        users=0.5, products=1.0, orders=1.5, payments=0.5, gateway=0.1,
        relay=0.2, notifications=0.2, rabbitmq=0.8, mailsink=7.0, products_nocache=3.0,
    )  # fmt: skip
    # The services, the gateway, the relay, the worker and the broker.
    assert round(report.platform_cpu_ms(order), 6) == 4.8
    targets = _targets(order)
    total = next(t for name, t in targets.items() if "every platform process" in name)
    assert total["pass"] is True
    assert targets["order: relay <= 0.3 ms CPU per order"]["pass"] is True
    # 0.2 s over 500 mails: 0.4 ms per mail, on the line.
    worker = targets["order: notification worker <= 0.4 ms CPU per mail sent"]
    assert worker["pass"] is True
    assert worker["measured"].startswith("0.4 ms")


def test_an_expensive_event_side_fails_its_targets() -> None:
    order = _order(
        users=0.5, products=1.0, orders=1.5, payments=0.5, gateway=0.1,
        relay=0.9, notifications=1.0, rabbitmq=1.5, mailsink=1.0,
    )  # fmt: skip
    targets = _targets(order)
    assert targets["order: relay <= 0.3 ms CPU per order"]["pass"] is False
    assert targets["order: notification worker <= 0.4 ms CPU per mail sent"]["pass"] is False
    total = next(t for name, t in targets.items() if "every platform process" in name)
    assert total["pass"] is False
    assert "mailsink" not in total["measured"]


def test_no_mail_sent_fails_the_worker_target() -> None:
    order = _order(users=0.5, orders=1.0, relay=0.1, notifications=0.1, rabbitmq=0.1)
    order["mails_sent"] = 0
    worker = _targets(order)["order: notification worker <= 0.4 ms CPU per mail sent"]
    assert worker["pass"] is False
    assert worker["measured"] == "no mail sent"
