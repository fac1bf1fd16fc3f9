"""The ``mixed_traced`` scenario (issue 30): the seed's mix with tracing on, against the same
mix untraced, at one paced rate, in one run.

The four services are restarted with the standard OpenTelemetry variables (OTLP/HTTP to a
receiver in this process that reads and discards every export, parent-based ratio sampling
at 10%, as production samples) or without them, and the mix is run on each. One untraced and
one traced step make a round; the rounds alternate which goes first (untraced-traced,
traced-untraced, ...), and every step runs on services restarted for it and warmed for a
moment, so neither kind gets the warmer processes or the quieter minute. The figure is the
median over the rounds of the platform's CPU per request traced against untraced: one pair
of 10-s steps on this 2-core machine moved between +2% and +19% from run to run
(docs/performance.md, "Tracing"), which is the machine, not tracing. The lean routes'
answers (``shop_lean_requests_total``) show that tracing leaves the fast paths on. The
services are left untraced at the end.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench import scenarios
from bench.platform import Platform
from shop.devtools.processes import SERVICES, ServiceProcess, wait_ready

SAMPLE_RATIO = 0.1  # production's (deploy/k8s/components/tracing)
_LEAN = re.compile(r'^shop_lean_requests_total\{route="([^"]+)"\} ([0-9.e+]+)$', re.M)


class _Discard(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        with self.server.lock:
            self.server.exports += 1
            self.server.bytes += length
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")  # an empty ExportTraceServiceResponse
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Discard)
        self.lock = threading.Lock()
        self.exports = 0
        self.bytes = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def discarding_receiver() -> Iterator[_Receiver]:
    """An OTLP/HTTP endpoint that takes every export and keeps nothing but counts."""
    receiver = _Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()


def traced_env(endpoint: str, ratio: float = SAMPLE_RATIO) -> dict[str, str]:
    """The standard variables a traced service is deployed with."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(ratio),
        "OTEL_SDK_DISABLED": "false",
    }


def restart_services(platform: Platform, extra: dict[str, str], *, drop: tuple[str, ...]) -> None:
    """Restart the four services on their own ports (the gateway's upstreams stay valid) with
    ``extra`` in their environment and the ``drop`` variables removed."""
    for name in SERVICES:
        old = platform.procs[name]
        old.stop()
        env = {k: v for k, v in old.env.items() if k not in drop} | extra
        new = ServiceProcess(old.name, old.port, env, old.log_path)
        platform.procs[name] = new
        new.start()
    wait_ready([platform.procs[name] for name in SERVICES], timeout=120)


def lean_answers(platform: Platform) -> dict[str, float]:
    """Each service's lean answers so far, by route (their /metrics)."""
    counts: dict[str, float] = {}
    with httpx.Client(timeout=10) as client:
        for name in SERVICES:
            text = client.get(f"{platform.procs[name].url}/metrics").text
            for route, value in _LEAN.findall(text):
                counts[route] = counts.get(route, 0.0) + float(value)
    return counts


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {route: after[route] - before.get(route, 0.0) for route in after}


def platform_cpu_ms_per_request(step: dict[str, Any]) -> float:
    """CPU ms per answered request over the services and the gateway (the processes tracing
    changes; the relay, the worker and the broker are not in the mix's path)."""
    requests = step.get("requests") or 0
    total = sum(
        proc.get("cpu_seconds", 0.0)
        for name, proc in step.get("processes", {}).items()
        if name in (*SERVICES, "gateway")
    )
    return round(1000 * total / requests, 3) if requests else 0.0


WARMUP_S = 2.0  # after each restart: pools open, the near cache refills


def median_overhead(rounds: list[dict[str, Any]]) -> float | None:
    """The median over the rounds of traced CPU per request against untraced, less one. A
    round with errors in either step is left out: a refused request is not a cheap one."""
    ratios = sorted(
        r["traced"] / r["untraced"] - 1
        for r in rounds
        if r["untraced"] and r["traced"] and not r.get("errors")
    )
    if not ratios:
        return None
    mid = len(ratios) // 2
    value = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    return round(value, 3)


def _total(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The steps of one kind together: requests, CPU per request and lean answers summed."""
    requests = sum(step.get("requests") or 0 for step in steps)
    lean: dict[str, float] = {}
    for step in steps:
        for route, count in step["lean_answers"].items():
            lean[route] = lean.get(route, 0.0) + count
    cpu = sum(step["cpu_ms_per_request_platform"] * (step.get("requests") or 0) for step in steps)
    return {
        "requests": requests,
        "lean_answers": lean,
        "cpu_ms_per_request_platform": round(cpu / requests, 3) if requests else 0.0,
        "steps": steps,
    }


def run_mixed_traced(
    platform: Platform,
    tokens_file: Path,
    *,
    rate: float,
    duration: float,
    measure: Any,
    backends: tuple[str, str] | None,
    mix: dict[str, float] | None = None,
    rounds: int = 5,
    log_in: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """``rounds`` of the mix at ``rate`` untraced and traced (10%), in alternating order, each
    step on services restarted for it; each step with the platform's CPU per request and the
    lean routes' answers. ``log_in`` renews the customers' tokens before each step."""

    def step() -> dict[str, Any]:
        if log_in is not None:
            log_in()
        jobs = scenarios.mixed_jobs(platform, tokens_file, rate, mix)
        before = lean_answers(platform)
        figures: dict[str, Any] = measure(
            jobs,
            duration=duration,
            pids=platform.pids(),
            backends=backends,
            warmup=min(WARMUP_S, duration),
        )
        figures["lean_answers"] = _delta(lean_answers(platform), before)
        figures["cpu_ms_per_request_platform"] = platform_cpu_ms_per_request(figures)
        return figures

    variables = tuple(traced_env(""))
    steps: dict[str, list[dict[str, Any]]] = {"untraced": [], "traced": []}
    pairs: list[dict[str, Any]] = []
    with discarding_receiver() as receiver:
        try:
            for n in range(rounds):
                order = ("untraced", "traced") if n % 2 == 0 else ("traced", "untraced")
                pair: dict[str, Any] = {"order": list(order)}
                for kind in order:
                    extra = traced_env(receiver.endpoint) if kind == "traced" else {}
                    restart_services(platform, extra, drop=variables)
                    figures = step()
                    steps[kind].append(figures)
                    pair[kind] = figures["cpu_ms_per_request_platform"]
                    pair["errors"] = pair.get("errors", 0) + (figures.get("error_count") or 0)
                pairs.append(pair)
        finally:
            restart_services(platform, {}, drop=variables)
        exports = {"requests": receiver.exports, "bytes": receiver.bytes}
    return {
        "rate": rate,
        "sample_ratio": SAMPLE_RATIO,
        "rounds": pairs,
        "untraced": _total(steps["untraced"]),
        "traced": _total(steps["traced"]),
        "exports": exports,
        "cpu_overhead": median_overhead(pairs),
    }
