"""The security suite runs on the in-process platform of the integration tests (all four
services, real PostgreSQL); its fixtures are re-exported here so pytest finds them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import (  # noqa: F401 - fixtures, found by name
    Platform,
    clean,
    make_product,
    platform,
)
from tests.security.helpers import register


@pytest.fixture
async def customers(platform: Platform) -> tuple[dict[str, Any], dict[str, Any]]:  # noqa: F811
    """Two customers, alice and bob."""
    return await register(platform, "alice"), await register(platform, "bob")
