"""scripts/vault-setup.sh against a real OpenBao: what it configures, and that each service's
policy allows exactly what the service needs."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from shop.common.secrets import VaultSecretSource
from shop.common.vault import Vault, VaultConfig, VaultError
from tests.vault.conftest import Configured, run_setup

SERVICES = {
    "users": "user-service",
    "products": "product-service",
    "orders": "order-service",
    "payments": "payment-service",
}


def test_the_script_configures_everything_and_is_idempotent(configured: Configured) -> None:
    bao = configured.bao
    with bao.client() as c:
        mounts = c.get("sys/mounts").json()["data"]
        auths = c.get("sys/auth").json()["data"]
        policies = c.get("sys/policies/acl", params={"list": "true"}).json()["data"]["keys"]
        internal = c.get("secret/data/shop/internal").json()["data"]["data"]
        users = c.get("secret/data/shop/users").json()["data"]
        for svc, account in SERVICES.items():
            k8s = c.get(f"auth/kubernetes/role/{account}").json()["data"]
            assert k8s["bound_service_account_names"] == [account]
            assert k8s["bound_service_account_namespaces"] == ["shop"]
            assert k8s["audience"] == "vault"
            assert k8s["token_policies"] == [f"shop-{svc}"]
            approle = c.get(f"auth/approle/role/{account}").json()["data"]
            assert approle["token_policies"] == [f"shop-{svc}"]
        role = c.get("database/roles/products").json()["data"]
    assert mounts["secret/"]["options"]["version"] == "2"
    assert mounts["database/"]["type"] == "database"
    assert {"kubernetes/", "approle/"} <= set(auths)
    assert {f"shop-{s}" for s in SERVICES} | {"shop-key-rotator"} <= set(policies)
    assert len(internal["SHOP_SERVICE_TOKEN_SECRET"]) >= 32
    assert users["data"]["SHOP_JWT_PRIVATE_KEY"].startswith("-----BEGIN PRIVATE KEY-----")
    assert users["data"]["SHOP_JWT_NEXT_PRIVATE_KEY"] != users["data"]["SHOP_JWT_PRIVATE_KEY"]
    assert len(users["data"]["SHOP_ADMIN_PASSWORD"]) >= 16
    assert role["db_name"] == configured.products_db_name

    again = run_setup(bao, {})  # a second run keeps every secret as it is
    assert again.returncode == 0, again.stderr
    with bao.client() as c:
        assert (
            c.get("secret/data/shop/users").json()["data"]["metadata"]["version"]
            == (users["metadata"]["version"])
        )


def _status(bao, token: str, method: str, path: str, **kw) -> int:
    with bao.client(token) as c:
        return c.request(method, path, **kw).status_code


def test_the_backup_may_snapshot_but_neither_restore_nor_read_secrets(
    configured: Configured,
) -> None:
    """shop-backup: the raft snapshot (proven sufficient by tests/backup/test_drill.py on a
    raft server; the dev server here has no raft) and its database login, nothing else."""
    bao = configured.bao
    with bao.client() as c:
        role = c.get("auth/kubernetes/role/shop-backup").json()["data"]
    assert role["bound_service_account_names"] == ["shop-backup"]
    assert role["audience"] == "vault"
    assert role["token_policies"] == ["shop-backup"]
    token = bao.token_for("shop-backup")
    assert _status(bao, token, "POST", "sys/storage/raft/snapshot-force", content=b"x") == 403
    assert _status(bao, token, "POST", "sys/storage/raft/snapshot", content=b"x") == 403
    for path in ("secret/data/shop/internal", "secret/data/shop/users", "database/creds/products"):
        assert _status(bao, token, "GET", path) == 403, path


def test_the_storefront_reads_the_internal_secret_and_nothing_else(
    configured: Configured,
) -> None:
    """deploy/k8s/base/storefront's Vault Agent logs in as role storefront for one file."""
    bao = configured.bao
    with bao.client() as c:
        k8s = c.get("auth/kubernetes/role/storefront").json()["data"]
        approle = c.get("auth/approle/role/storefront").json()["data"]
    assert k8s["bound_service_account_names"] == ["storefront"]
    assert k8s["bound_service_account_namespaces"] == ["shop"]
    assert k8s["audience"] == "vault"
    assert k8s["token_policies"] == approle["token_policies"] == ["shop-storefront"]
    token = bao.token_for("shop-storefront")
    assert _status(bao, token, "GET", "secret/data/shop/internal") == 200
    for path in ("secret/data/shop/users", *(f"database/creds/{s}" for s in SERVICES)):
        assert _status(bao, token, "GET", path) == 403, path


@pytest.mark.parametrize("svc", list(SERVICES))
def test_each_policy_is_least_privilege(configured: Configured, svc: str) -> None:
    bao = configured.bao
    token = bao.token_for(f"shop-{svc}")
    read = lambda path: _status(bao, token, "GET", path)  # noqa: E731
    assert read("secret/data/shop/internal") == 200
    assert read("secret/data/shop/users") == (200 if svc == "users" else 403)
    assert read("secret/metadata/shop/users") == 403
    assert read("sys/policies/acl/shop-users") == 403
    assert read("sys/mounts") == 403
    assert _status(bao, token, "LIST", "secret/metadata/shop") == 403
    for other in SERVICES:
        if other != svc:
            assert read(f"database/creds/{other}") == 403, other
    assert read("database/config/" + configured.products_db_name) == 403
    assert _status(bao, token, "POST", "secret/data/shop/internal", json={"data": {}}) == 403
    # The user service may write its key ring (check-and-set: a stale version is refused).
    stale = {"options": {"cas": 10_000}, "data": {}}
    users_write = _status(bao, token, "POST", "secret/data/shop/users", json=stale)
    assert users_write == (400 if svc == "users" else 403)


def test_a_service_renews_and_revokes_only_its_own_leases(configured: Configured) -> None:
    bao = configured.bao
    products = bao.token_for("shop-products")
    orders = bao.token_for("shop-orders")
    with bao.client(products) as c:
        lease = c.get("database/creds/products").json()["lease_id"]
    assert lease.startswith("database/creds/products/")
    body = {"lease_id": lease, "increment": 4}
    assert _status(bao, orders, "PUT", "sys/leases/renew", json=body) == 403
    assert _status(bao, orders, "PUT", "sys/leases/revoke", json={"lease_id": lease}) == 403
    assert _status(bao, products, "PUT", "sys/leases/renew", json=body) == 200
    assert _status(bao, products, "PUT", "sys/leases/revoke", json={"lease_id": lease}) == 204


def test_approle_login_reads_the_service_secrets(configured: Configured) -> None:
    bao = configured.bao
    with bao.client() as c:
        role_id = c.get("auth/approle/role/product-service/role-id").json()["data"]["role_id"]
        secret_id = c.post("auth/approle/role/product-service/secret-id").json()["data"][
            "secret_id"
        ]
    config = VaultConfig(
        addr=bao.addr, auth="approle", approle_role_id=role_id, approle_secret_id=secret_id
    )
    vault = Vault.connect(config, default_role="product-service")
    try:
        source = VaultSecretSource(vault)
        assert "SHOP_SERVICE_TOKEN_SECRET" in source.read("internal").values
        with pytest.raises(VaultError):
            source.read("users")  # another service's path: permission denied, not "empty"
    finally:
        vault.close()
    with pytest.raises(VaultError):
        Vault.connect(
            config.model_copy(update={"approle_secret_id": SecretStr("not-the-secret-id")}),
            default_role="product-service",
        )


def test_kubernetes_login_is_refused_without_a_valid_service_account_token(
    configured: Configured, tmp_path
) -> None:
    # No cluster here: the login must fail closed (Vault cannot review the token).
    jwt_file = tmp_path / "token"
    jwt_file.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    config = VaultConfig(
        addr=configured.bao.addr, auth="kubernetes", kubernetes_token_file=jwt_file
    )
    with pytest.raises(VaultError):
        Vault.connect(config, default_role="user-service")


def test_the_bao_server_is_reachable(configured: Configured) -> None:
    assert httpx.get(f"{configured.bao.addr}/v1/sys/health").json()["initialized"] is True
