"""Run wrk (Debian's, with the Lua scripts in bench/lua/) and read its JSON summary.

A scenario is one or more wrk jobs started together (the mixed traffic runs one per entry
service, each paced to its share of the rate); their results are merged here.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parent / "lua"


class WrkMissing(RuntimeError):
    pass


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise WrkMissing("wrk is not installed: run `make tools` (scripts/install-apt-tools.sh)")
    return found


@dataclass
class Job:
    """One wrk process: a script against one service, optionally paced to ``rate`` req/s."""

    name: str
    url: str
    script: str
    connections: int
    args: dict[str, str] = field(default_factory=dict)
    rate: float | None = None
    threads: int = 1
    timeout_s: int = 10

    def command(self, duration: float) -> list[str]:
        args = dict(self.args)
        if self.rate:
            args["rate"] = f"{self.rate / self.threads:.3f}"
        return [
            wrk_binary(),
            f"--threads={self.threads}",
            f"--connections={max(self.connections, self.threads)}",
            f"--duration={max(1, round(duration))}s",
            f"--timeout={self.timeout_s}s",
            f"--script={LUA_DIR / self.script}",
            self.url,
            "--",
            *(f"{k}={v}" for k, v in args.items()),
        ]


@dataclass
class JobResult:
    name: str
    requests: int
    duration_s: float
    rps: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    quantiles_us: list[int]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _parse(name: str, output: str) -> JobResult:
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            data: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            break
    else:
        raise RuntimeError(f"wrk job {name} printed no summary:\n{output[-2000:]}")
    duration = data["duration_us"] / 1e6
    return JobResult(
        name=name,
        requests=data["requests"],
        duration_s=round(duration, 2),
        rps=round(data["requests"] / duration, 1) if duration else 0.0,
        errors=data["errors"],
        latency_ms={k: round(v / 1000, 2) for k, v in data["latency_us"].items()},
        quantiles_us=data["quantiles_us"],
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_jobs(jobs: list[Job], duration: float) -> tuple[list[JobResult], float]:
    """Start every job at once and wait for all (bounded by ``duration`` plus wrk's timeout).
    Returns each job's result and the CPU seconds the load generator itself used."""
    env = {**os.environ, "BENCH_LUA_DIR": str(LUA_DIR)}
    cpu_before = _children_cpu()
    procs = [
        (
            job,
            subprocess.Popen(
                job.command(duration),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for job in jobs
    ]
    outputs = []
    for job, proc in procs:
        try:
            out, _ = proc.communicate(timeout=duration + job.timeout_s + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        outputs.append((job, proc.returncode, out))
    wrk_cpu = _children_cpu() - cpu_before
    results = []
    for job, code, out in outputs:
        if code != 0:
            raise RuntimeError(f"wrk job {job.name} exited {code}:\n{out[-2000:]}")
        results.append(_parse(job.name, out))
    return results, round(wrk_cpu, 2)


def merge(results: list[JobResult], wrk_cpu: float) -> dict[str, Any]:
    """Totals of jobs that ran together; percentiles of the mixture (each job's quantiles
    weighted by its request count), close to what one client would have measured."""
    requests = sum(r.requests for r in results)
    duration = max((r.duration_s for r in results), default=0.0)
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    points: list[tuple[float, float]] = []
    for r in results:
        weight = r.requests / max(1, len(r.quantiles_us))
        points += [(q / 1000, weight) for q in r.quantiles_us]
    points.sort()
    total_weight = sum(w for _, w in points) or 1.0

    def percentile(p: float) -> float:
        target, seen = total_weight * p / 100, 0.0
        for value, weight in points:
            seen += weight
            if seen >= target:
                return round(value, 2)
        return round(points[-1][0], 2) if points else 0.0

    if len(results) == 1:
        latency = dict(results[0].latency_ms)
    else:
        latency = {
            "p50": percentile(50),
            "p90": percentile(90),
            "p95": percentile(95),
            "p99": percentile(99),
            "max": max(r.latency_ms["max"] for r in results),
        }
    return {
        "requests": requests,
        "duration_s": duration,
        "rps": round(sum(r.rps for r in results), 1),
        "errors": errors,
        "error_count": sum(errors.values()),
        "latency_ms": latency,
        "wrk_cpu_seconds": wrk_cpu,
    }
