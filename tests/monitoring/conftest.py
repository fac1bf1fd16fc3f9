"""Fixtures of the offline monitoring checks: the promtool binary and a way to run it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
