"""The four services as real processes on free ports, started the way `make run` starts them
(tests/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Platform, started

ADMIN_PASSWORD = "e2e-admin-password"


@pytest.fixture(scope="session")
def live(
    e2e_database_urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    with started(
        tmp_path_factory,
        database_urls=e2e_database_urls,
        admin_password=ADMIN_PASSWORD,
        kind=Platform,
    ) as platform:
        yield platform
