"""Fixtures of the monitoring checks: the promtool binary and a way to run it (offline
checks); the four services as processes, traced into an OTLP receiver (live checks)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop.devtools.postgres import SERVICE_DATABASES, Server, drop_databases
from tests.harness import started
from tests.monitoring.live import ADMIN_PASSWORD, OtlpReceiver, TracedPlatform

INSTALL_HINT = "run scripts/install-apt-tools.sh (installs the Debian prometheus package)"


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool; a missing promtool fails the test (a green run means it ran)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(f"promtool is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def run_promtool(promtool: str, *args: str | Path, cwd: Path | None = None) -> str:
    """Run promtool; fail the test with its output when it exits non-zero."""
    result = subprocess.run(
        [promtool, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(f"promtool {' '.join(map(str, args))} failed:\n{output}", pytrace=False)
    return output


@pytest.fixture(scope="package")
def traced_platform(
    pg_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TracedPlatform]:
    """The four services as processes on their own databases, exporting spans to a receiver.

    Shared by the trace test and the real-Prometheus test (one start-up for both); stopped
    when this folder's tests are done.
    """
    from shop.devtools.local import prepare

    prefix = f"t{secrets.token_hex(4)}_"
    urls = prepare(pg_server, prefix=prefix)
    try:
        with (
            OtlpReceiver() as receiver,
            started(
                tmp_path_factory,
                database_urls=urls,
                admin_password=ADMIN_PASSWORD,
                extra={
                    "SHOP_OTLP_ENDPOINT": receiver.endpoint,
                    # Export every 100 ms instead of 5 s, so the test need not wait for spans.
                    "OTEL_BSP_SCHEDULE_DELAY": "100",
                },
                kind=TracedPlatform,
                receiver=receiver,
            ) as platform,
        ):
            yield platform
    finally:
        asyncio.run(
            drop_databases(pg_server, [prefix + name for name in SERVICE_DATABASES.values()])
        )
