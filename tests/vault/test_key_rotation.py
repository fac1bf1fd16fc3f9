"""Signing keys in OpenBao, rotated on a schedule and by `shop rotate-keys` while requests run.

The user service runs as a real HTTP server (uvicorn, in this event loop) with its key ring in
Vault; the payment service verifies its tokens through the published JWKS, fetched over HTTP.
Clients keep logging in, refreshing and calling the payment service with new and old tokens
while the keys rotate several times: not one request may fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import jwt
import pytest
import uvicorn
from fastapi import FastAPI

from shop import cli
from shop.common.settings import Environment
from shop.devtools.processes import free_port
from shop.payments.app import create_app as payments_app
from shop.payments.settings import PaymentsSettings
from shop.users.app import create_app as users_app
from shop.users.keys import RotatorSettings, rotate_vault_keys
from shop.users.settings import UsersSettings
from tests.vault.conftest import Configured

ROTATIONS_WANTED = 4  # distinct signing keys seen in issued tokens
DEADLINE = 180.0  # seconds; generous for a slow machine, normally a few seconds


@dataclass
class Live:
    users: httpx.AsyncClient
    payments: httpx.AsyncClient
    users_app: FastAPI
    payments_app: FastAPI


@contextlib.asynccontextmanager
async def serve(app: FastAPI, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(6000):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, "the user service did not start"
    try:
        yield
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def live(configured: Configured, database_urls: dict[str, str]) -> AsyncIterator[Live]:
    bao = configured.bao
    port = free_port()
    users = users_app(
        UsersSettings(
            env=Environment.TEST,
            database_url=database_urls["users"],
            vault_addr=bao.addr,
            vault_token=bao.token_for("shop-users"),
            admin_password=None,  # the shared test database's admin is the integration suite's
            jwt_keys_reload_seconds=0.2,
            jwt_rotation_interval_seconds=1.0,  # the schedule rotates every second here
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
            db_pool_min=1,
            db_pool_max=3,
            db_command_timeout=30,
        )
    )
    payments = payments_app(
        PaymentsSettings(
            env=Environment.TEST,
            database_url=database_urls["payments"],
            vault_addr=bao.addr,
            vault_token=bao.token_for("shop-payments"),
            jwks_url=f"http://127.0.0.1:{port}/.well-known/jwks.json",
            jwks_max_age_seconds=0.5,
            jwks_min_refresh_seconds=0.05,
            db_pool_min=1,
            db_pool_max=2,
            db_command_timeout=30,
        )
    )
    async with (
        serve(users, port),
        payments.router.lifespan_context(payments),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as users_client,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(payments), base_url="http://payments", timeout=60
        ) as payments_client,
    ):
        yield Live(users_client, payments_client, users, payments)


def kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def test_settings_come_from_vault(live: Live, configured: Configured) -> None:
    with configured.bao.client() as c:
        internal = c.get("secret/data/shop/internal").json()["data"]["data"]
    for app in (live.users_app, live.payments_app):
        settings = app.state.settings
        assert (
            settings.service_token_secret.get_secret_value()
            == (internal["SHOP_SERVICE_TOKEN_SECRET"])
        )
    assert live.users_app.state.settings.admin_password is None  # init arguments win


async def test_zero_failed_requests_while_keys_rotate(live: Live) -> None:
    name = f"rot_{secrets.token_hex(4)}"
    password = "correct horse battery"
    reg = await live.users.post(
        "/api/v1/users/register",
        json={"username": name, "email": f"{name}@example.com", "password": password},
    )
    assert reg.status_code == 201, reg.text
    user_id = reg.json()["id"]
    first = (
        await live.users.post("/api/v1/users/login", json={"username": name, "password": password})
    ).json()
    oldest_token = first["access_token"]
    kids: set[str] = {kid(oldest_token)}
    failures: list[str] = []
    requests = 0
    stop, second_key, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    def saw(token: str) -> None:
        kids.add(kid(token))
        if len(kids) >= 2:
            second_key.set()
        if len(kids) >= ROTATIONS_WANTED:
            done.set()

    def fail(message: str) -> None:
        failures.append(message)
        done.set()

    async def call_payments(token: str, what: str) -> None:
        nonlocal requests
        requests += 1
        response = await live.payments.get(
            f"/api/v1/payments/user/{user_id}", headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code != 200:
            fail(f"{what} ({kid(token)}): {response.status_code} {response.text}")

    async def client_loop(refresh_token: str) -> None:
        nonlocal requests
        while not stop.is_set():
            login = await live.users.post(
                "/api/v1/users/login", json={"username": name, "password": password}
            )
            requests += 1
            if login.status_code != 200:
                fail(f"login: {login.status_code} {login.text}")
                continue
            token = login.json()["access_token"]
            saw(token)
            await call_payments(token, "new token")
            await call_payments(oldest_token, "token from before every rotation")
            refreshed = await live.users.post(
                "/api/v1/users/refresh", json={"refresh_token": refresh_token}
            )
            requests += 1
            if refreshed.status_code != 200:
                fail(f"refresh: {refreshed.status_code} {refreshed.text}")
                continue
            refresh_token = refreshed.json()["refresh_token"]
            await call_payments(refreshed.json()["access_token"], "refreshed token")
            me = await live.users.get(
                f"/api/v1/users/{user_id}", headers={"Authorization": f"Bearer {token}"}
            )
            requests += 1
            if me.status_code != 200:
                fail(f"users: {me.status_code} {me.text}")

    async def rotate_by_command() -> None:
        # `shop rotate-keys` (its function; the CLI itself is tested below) in the middle.
        await second_key.wait()
        await rotate_vault_keys(
            RotatorSettings(
                vault_addr=live.users_app.state.settings.vault_addr,
                vault_token=live.users_app.state.settings.vault_token,
            )
        )

    refresh_tokens = [first["refresh_token"]]
    for _ in range(3):
        again = await live.users.post(
            "/api/v1/users/login", json={"username": name, "password": password}
        )
        refresh_tokens.append(again.json()["refresh_token"])
    tasks = [asyncio.create_task(client_loop(r)) for r in refresh_tokens]
    tasks.append(asyncio.create_task(rotate_by_command()))
    try:
        async with asyncio.timeout(DEADLINE):
            await done.wait()
    finally:
        stop.set()
        second_key.set()
        await asyncio.gather(*tasks)
    assert failures == []
    assert len(kids) >= ROTATIONS_WANTED
    assert requests > 0
    print(f"{requests} requests, {len(kids)} signing keys, 0 failures")
    keys = live.payments_app.state.verifier._keys
    assert keys.fetches >= 2  # the verifier refreshed the JWKS as keys changed


def test_shop_rotate_keys_command(
    configured: Configured, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bao = configured.bao
    with bao.client() as c:
        before = c.get("secret/data/shop/users").json()["data"]
    monkeypatch.setenv("SHOP_VAULT_ADDR", bao.addr)
    monkeypatch.setenv("SHOP_VAULT_TOKEN", bao.token_for("shop-key-rotator"))
    assert cli.main(["rotate-keys"]) == 0
    assert "signing key rotated" in capsys.readouterr().out
    with bao.client() as c:
        after = c.get("secret/data/shop/users").json()["data"]
    assert after["metadata"]["version"] == before["metadata"]["version"] + 1
    # next became current; the admin password and everything else at the path is kept
    assert after["data"]["SHOP_JWT_PRIVATE_KEY"] == before["data"]["SHOP_JWT_NEXT_PRIVATE_KEY"]
    assert after["data"]["SHOP_ADMIN_PASSWORD"] == before["data"]["SHOP_ADMIN_PASSWORD"]

    monkeypatch.setenv("SHOP_VAULT_TOKEN", bao.token_for("shop-products"))
    with pytest.raises(Exception, match="permission denied"):
        cli.main(["rotate-keys"])  # another service's token may not touch the keys
