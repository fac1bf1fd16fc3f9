"""pgbench select-only against this run's own pgbench database: the database's ceiling."""

from __future__ import annotations

import glob
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any


def pgbench_binary() -> str | None:
    """The server's own pgbench if Debian's is installed, else the one in the pgserver wheel
    (a dev dependency, so always there after `make`), else whatever PATH has."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    if found:
        return found[0]
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("pgbench")


def run(url: str, *, duration: float, clients: int = 8, scale: int = 10) -> dict[str, Any]:
    binary = pgbench_binary()
    if binary is None:
        return {"skipped": "pgbench not found"}
    subprocess.run(
        [binary, "--initialize", "--quiet", f"--scale={scale}", url],
        check=True,
        capture_output=True,
    )
    with tempfile.TemporaryDirectory(prefix="pgbench-") as logs:
        out = subprocess.run(
            [
                binary,
                "--select-only",
                "--no-vacuum",
                "--protocol=prepared",
                f"--client={clients}",
                "--jobs=2",
                f"--time={max(1, round(duration))}",
                "--log",
                f"--log-prefix={logs}/tx",
                "--sampling-rate=0.05",
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        latencies = sorted(
            int(line.split()[2]) / 1000
            for path in Path(logs).glob("tx*")
            for line in path.read_text().splitlines()
            if line.strip()
        )
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))], 3)

    return {
        "binary": binary,
        "clients": clients,
        "scale": scale,
        "rps": round(tps, 1),
        "latency_ms": {
            "mean": round(statistics.fmean(latencies), 3) if latencies else None,
            "p50": pct(50) if latencies else None,
            "p95": pct(95) if latencies else None,
            "p99": pct(99) if latencies else None,
        },
    }
