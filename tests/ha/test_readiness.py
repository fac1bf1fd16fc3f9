"""Ready means ready: the moment every process and the gateway say so, a token issued then is
accepted everywhere (issue 26: a product service that answered ready while it held no key
refused a fresh admin token with 401 "signed with an unknown key")."""

from __future__ import annotations

import httpx
import pytest

from shop.devtools.cluster import Cluster
from tests.ha.conftest import needs_envoy
from tests.ha.first_contact import Answer, protected_operations

pytestmark = [pytest.mark.ha, needs_envoy]


def test_the_moment_it_is_ready_a_new_token_is_accepted_on_every_protected_route(
    cluster: Cluster,
) -> None:
    answers: list[Answer] = cluster.first_contact  # type: ignore[attr-defined]
    operations = sum(len(protected_operations(s)) for s in cluster.replicas)
    assert operations >= 20  # the probe found the routes (the OpenAPI says which need a token)
    # each operation through the gateway and straight to each of its two replicas
    assert len(answers) == operations * 3
    refused = [a for a in answers if a.status == 401 or a.status == 503]
    assert refused == []
    # the token was checked, not skipped: the routes answered as to an admin (validation,
    # missing records, a customer-only route), never a server error
    assert all(a.status < 500 for a in answers), [a for a in answers if a.status >= 500]


def test_every_replica_reports_the_keys_it_verifies_with(cluster: Cluster) -> None:
    for replicas in cluster.replicas.values():
        for replica in replicas:
            body = httpx.get(f"{replica.url}/health/ready", timeout=30).json()
            assert body["checks"]["signing_keys"] is True, (replica.url, body)
