"""Profile a scenario (by default the order path): py-spy samples the services it loads (for
orders: the order, product and payment services) while wrk drives it; the top costs by own
time and by inclusive time, per service. ``mixed`` drives the seed's mix through the gateway,
paced at ``mix_rate`` after a walk of the catalogue, and samples all four services;
``mixed_traced`` profiles that twice, untraced and with tracing on at 10% (bench/traced.py),
each side on services restarted for it, so that the OpenTelemetry SDK's share is the
difference between two like profiles."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import scenarios, traced
from bench.platform import Platform, login_tokens
from bench.runner import by_job, warm_cache
from bench.wrk import merge, run_jobs


def _frame(frame: str) -> str:
    # py-spy raw frames read "function (path/to/file.py:line)": keep function and short path.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "src/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where.rsplit(':', 1)[0]})"


# Where a sample's time goes, by the first rule any frame of its stack matches.
CATEGORIES = (
    ("ServiceClient.request", "outbound HTTP calls (aiohttp)"),
    ("opentelemetry/", "tracing (OpenTelemetry SDK and instrumentations)"),
    ("TokenVerifier.verify", "JWT verification"),
    ("asyncpg/", "PostgreSQL queries (asyncpg)"),
    ("argon2", "password hashing (argon2)"),
    ("structlog", "logging"),
    ("logging/__init__", "logging"),
    ("prometheus_client", "metrics"),
    ("solve_dependencies", "parameters, dependencies, validation"),
)
OTHER = "framework, middleware, server (FastAPI, Starlette, uvicorn)"
# Leaf frames that stand for the event loop's own work: socket reads and writes, callbacks.
IO_LEAVES = ("Runner.run ", "RequestResponseCycle.send ", "HttpToolsProtocol.data_received ")
IO = "event loop, socket I/O (uvloop, uvicorn)"


def _category(stack: str, leaf: str) -> str:
    if "ServiceClient.request" in stack and "opentelemetry/" not in leaf:
        return CATEGORIES[0][1]
    if leaf.startswith(IO_LEAVES):
        return IO
    return next((name for key, name in CATEGORIES if key in stack), OTHER)


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    category: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")[1:]]  # [0] is the thread
        if not frames:
            continue
        total += count
        category[_category(stack, frames[-1])] += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return {
        "samples": total,
        "categories": [(c, round(100 * n / total, 1)) for c, n in category.most_common()]
        if total
        else [],
        "own": [(f, round(100 * n / total, 1)) for f, n in own.most_common(top)] if total else [],
        "inclusive": [(f, round(100 * n / total, 1)) for f, n in inclusive.most_common(top * 2)]
        if total
        else [],
    }


PROFILED_BY_SCENARIO = {
    # With the event side (bench/platform.py): the relay and the notification worker too.
    "order": ("orders", "products", "payments", "relay", "notifications"),
    "flash_sale": ("orders", "products", "payments"),
    "product_by_id": ("products",),
    "product_list": ("products",),
    "product_by_id_nocache": ("products_nocache",),
    "product_list_nocache": ("products_nocache",),
    "search": ("products",),
    "search_nocache": ("products_nocache",),
    "login": ("users",),
    "mixed": ("products", "users", "orders", "payments"),
    "mixed_traced": ("products", "users", "orders", "payments"),
}
MIX_RATE = 700.0  # req/s: below the knee of the mix on this machine, so nothing only queues


def py_spy_binary() -> str | None:
    """py-spy on PATH, else the one installed beside this interpreter (the venv's); None if
    neither exists."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def profile_scenario(
    platform: Platform,
    *,
    scenario: str,
    duration: float,
    connections: int,
    out_dir: Path,
    mix_rate: float = MIX_RATE,
) -> dict[str, Any]:
    tokens_file = platform.workdir / "tokens.txt"
    tokens_file.write_text("\n".join(login_tokens(platform, min(20, platform.users))) + "\n")
    if scenario == "mixed_traced":
        return _profile_traced(platform, duration, connections, out_dir, mix_rate)
    return _profile(platform, scenario, duration, connections, out_dir, mix_rate)


def _profile_traced(
    platform: Platform, duration: float, connections: int, out_dir: Path, mix_rate: float
) -> dict[str, Any]:
    """The mix untraced, then traced, each on the four services restarted for it and warmed
    alike (the catalogue walked after the restart), as ``traced.run_mixed_traced`` runs its
    steps: the two profiles differ by tracing, not by one side's older, warmer processes."""
    variables = tuple(traced.traced_env(""))
    sides: dict[str, Any] = {}
    with traced.discarding_receiver() as receiver:
        try:
            for kind, extra in (
                ("untraced", {}),
                ("traced", traced.traced_env(receiver.endpoint)),
            ):
                traced.restart_services(platform, extra, drop=variables)
                sides[kind] = _profile(
                    platform,
                    "mixed",
                    duration,
                    connections,
                    out_dir,
                    mix_rate,
                    label=f"mixed_{kind}",
                )
        finally:
            traced.restart_services(platform, {}, drop=variables)
    return {"scenario": "mixed_traced", "sides": sides}


def _profile(
    platform: Platform,
    scenario: str,
    duration: float,
    connections: int,
    out_dir: Path,
    mix_rate: float,
    *,
    label: str | None = None,
) -> dict[str, Any]:
    label = label or scenario
    py_spy = py_spy_binary()
    assert py_spy is not None, "py-spy is not installed (make .venv installs it)"
    tokens_file = platform.workdir / "tokens.txt"
    if scenario in scenarios.CACHED_READS and platform.redis_url:
        warm_cache(platform, connections)
    if scenario == "mixed":
        jobs = scenarios.mixed_jobs(platform, tokens_file, mix_rate)
    else:
        jobs = [scenarios.job(scenario, platform, tokens_file, connections=connections)]
    out_dir.mkdir(parents=True, exist_ok=True)
    pids = platform.pids()
    spies = {}
    for svc in [s for s in PROFILED_BY_SCENARIO[scenario] if s in pids]:
        raw = out_dir / f"profile-{label}-{svc}.txt"
        spies[svc] = (
            raw,
            subprocess.Popen(
                [
                    py_spy,
                    "record",
                    f"--pid={pids[svc]}",
                    f"--duration={round(duration)}",
                    "--rate=250",
                    "--format=raw",
                    f"--output={raw}",
                    "--nonblocking",
                    "--gil",  # only samples holding the GIL: Python work, not waiting
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ),
        )
    time.sleep(0.5)  # let the samplers attach
    results, wrk_cpu = run_jobs(jobs, duration)
    load = merge(results, wrk_cpu)
    load["jobs"] = by_job(results)
    profiles = {}
    for svc, (raw, proc) in spies.items():
        _, err = proc.communicate(timeout=duration + 30)
        if proc.returncode != 0 or not raw.exists():
            profiles[svc] = {"error": err.decode(errors="replace")[-500:]}
            continue
        profiles[svc] = summarise(raw)
    return {"scenario": label, "load": load, "profiles": profiles}


def render(result: dict[str, Any]) -> str:
    if "sides" in result:  # mixed_traced: the untraced and the traced profile
        return "\n\n".join(render(side) for side in result["sides"].values())
    load = result["load"]
    lines = [
        f"{result['scenario']} under py-spy: {load['rps']:.0f} req/s,"
        f" p95 {load['latency_ms']['p95']} ms, errors {load['error_count']}"
        " (sampling slows the services a little)"
    ]
    for svc, prof in result["profiles"].items():
        if "error" in prof:
            lines.append(f"\n{svc}: py-spy failed: {prof['error']}")
            continue
        lines.append(f"\n{svc} ({prof['samples']} samples) - by kind of work:")
        lines += [f"  {pct:5.1f}%  {name}" for name, pct in prof["categories"]]
        lines.append(f"{svc} - top own time:")
        lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in prof["own"]]
        lines.append(f"{svc} - top inclusive time:")
        lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in prof["inclusive"]]
    return "\n".join(lines)
