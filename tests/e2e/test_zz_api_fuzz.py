"""Schemathesis against each running service's OpenAPI, with every check: the documents say
what the services do (issue 17).

The same command a user runs (`st run URL/openapi.json --checks all` with an admin token, see
schemathesis.toml), per service, as the admin so that writes reach the database code: every
phase (examples, coverage, fuzzing with positive and negative data, and the stateful phase
that follows the links between operations). Deterministic (a fixed seed, derandomized
generation) and bounded (a few examples per operation). Runs after the journeys (file name
order), against the same processes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shop.devtools.processes import SERVICES
from tests.e2e.conftest import ADMIN_PASSWORD
from tests.harness import Platform

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ST = Path(sys.executable).with_name("st")
EXAMPLES_PER_OPERATION = 15


@pytest.fixture(scope="module")
def admin_headers(live: Platform) -> dict[str, str]:
    response = httpx.post(
        f"{live.url('users')}/api/v1/users/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_check_passes(live: Platform, admin_headers: dict[str, str], service: str) -> None:
    result = subprocess.run(
        [
            str(ST),
            "run",
            f"{live.url(service)}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: {admin_headers['Authorization']}",
            "--seed",
            "17",
            "--generation-deterministic",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--no-color",
            "--output-sanitize",
            "true",
        ],
        cwd=ROOT,  # schemathesis.toml: the one place a check is adjusted
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
    # Every phase ran (none skipped for want of operations or links).
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in result.stdout, result.stdout[-5_000:]
