"""The disaster-recovery drill from nothing, small: `python -m shop.devtools.drill` with three
customers. Real OpenBao (raft, Shamir-sealed), real PostgreSQL, the four services as
processes; everything destroyed and restored from the backup. The full-size figures are in
docs/disaster-recovery.md."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from shop.devtools.drill import RPO_SECONDS, DrillConfig, run_drill
from shop.devtools.postgres import Server

pytestmark = pytest.mark.e2e


def test_the_platform_comes_back_from_its_backups(pg_server: Server, tmp_path) -> None:
    if not urlsplit(pg_server.url).hostname:
        pytest.skip("the Vault database engine needs PostgreSQL over TCP, not the embedded socket")
    config = DrillConfig(
        users=3,
        orders_per_user=1,
        late_orders=1,
        new_orders=2,
        fast_hashing=True,
        work_dir=tmp_path,
        server_url=pg_server.url,
    )
    report = run_drill(config, out=lambda _line: None)
    facts = report.facts
    # run_drill raises DrillFailed on any difference; these say what was proven.
    assert facts["logins"] == 3
    assert facts["old_tokens"] == 3
    assert facts["orders_compared"] == facts["payments_compared"] == 3
    assert facts["lost_orders"] == 1  # the one placed after the backup, and only it
    assert facts["new_orders"] == 2
    assert facts["new_db_logins"] >= 4  # one per service at least, from the restored Vault
    assert facts["consistency_problems"] == 0
    # The snapshot's leases point at logins of the dropped databases: only force removes them.
    assert facts["stale_leases_revoked"] == "revoke-force"
    assert 0 < facts["loss_window_seconds"] < RPO_SECONDS
    names = [name for name, _ in report.steps]
    assert any("ORIGINAL keys" in name for name in names)
    assert all(seconds >= 0 for _, seconds in report.steps)
    assert "data lost: 1 orders" in report.render()
    assert not list(tmp_path.iterdir())  # the work folder is removed (no keys left behind)
