"""Profile a scenario (by default the order path): py-spy samples the services it loads (for
orders: the order, product and payment services) while wrk drives it; the top costs by own
time and by inclusive time, per service."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.platform import Platform, login_tokens
from bench.wrk import merge, run_jobs


def _frame(frame: str) -> str:
    # py-spy raw frames read "function (path/to/file.py:line)": keep function and short path.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "src/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where.rsplit(':', 1)[0]})"


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
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
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return {
        "samples": total,
        "own": [(f, round(100 * n / total, 1)) for f, n in own.most_common(top)] if total else [],
        "inclusive": [(f, round(100 * n / total, 1)) for f, n in inclusive.most_common(top * 2)]
        if total
        else [],
    }


PROFILED_BY_SCENARIO = {
    "order": ("orders", "products", "payments"),
    "product_by_id": ("products",),
    "product_list": ("products",),
    "login": ("users",),
}


def profile_scenario(
    platform: Platform, *, scenario: str, duration: float, connections: int, out_dir: Path
) -> dict[str, Any]:
    py_spy = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
    tokens_file = platform.workdir / "tokens.txt"
    tokens_file.write_text("\n".join(login_tokens(platform, min(20, platform.users))) + "\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    pids = platform.pids()
    spies = {}
    for svc in PROFILED_BY_SCENARIO[scenario]:
        raw = out_dir / f"profile-{scenario}-{svc}.txt"
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
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ),
        )
    time.sleep(0.5)  # let the samplers attach
    job = scenarios.job(scenario, platform, tokens_file, connections=connections)
    results, wrk_cpu = run_jobs([job], duration)
    load = merge(results, wrk_cpu)
    profiles = {}
    for svc, (raw, proc) in spies.items():
        _, err = proc.communicate(timeout=duration + 30)
        if proc.returncode != 0 or not raw.exists():
            profiles[svc] = {"error": err.decode(errors="replace")[-500:]}
            continue
        profiles[svc] = summarise(raw)
    return {"scenario": scenario, "load": load, "profiles": profiles}


def render(result: dict[str, Any]) -> str:
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
        lines.append(f"\n{svc} ({prof['samples']} samples) - top own time:")
        lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in prof["own"]]
        lines.append(f"{svc} - top inclusive time:")
        lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in prof["inclusive"]]
    return "\n".join(lines)
