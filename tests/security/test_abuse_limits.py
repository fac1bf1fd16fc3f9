"""Login and registration limits (429 with Retry-After, per client and per account), login
answers that do not reveal whether an account exists, body limits and security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from shop.common.settings import Environment
from shop.users.app import create_app as users_app
from shop.users.settings import UsersSettings
from tests.integration.conftest import Platform
from tests.security.helpers import PASSWORD, assert_problem, register


@pytest.fixture
async def limited(
    database_urls: dict[str, str],
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A user service with small limits (the test environment has them off by default)."""
    app = users_app(
        UsersSettings(
            env=Environment.TEST,
            database_url=database_urls["users"],
            admin_password=None,
            rate_limiting=True,
            login_ip_limit=8,
            login_account_limit=3,
            register_ip_limit=4,
            register_account_limit=2,
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
            db_pool_min=1,
            db_pool_max=2,
        )
    )
    async with app.router.lifespan_context(app):
        yield app


async def _post(app: FastAPI, path: str, body: dict, ip: str) -> httpx.Response:
    """A request from the client address ``ip`` (the peer address the app sees)."""
    transport = httpx.ASGITransport(app, client=(ip, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://users") as client:
        return await client.post(path, json=body)


async def _login(app: FastAPI, username: str, password: str, ip: str = "10.0.0.1"):
    return await _post(app, "/api/v1/users/login", {"username": username, "password": password}, ip)


async def test_failed_logins_per_account_get_429_for_existing_and_unknown_alike(
    platform: Platform, limited
) -> None:
    app = limited
    await register(platform, "alice")
    results = {}
    for name in ("alice", "nobody_here"):
        answers = [await _login(app, name, "wrong password", ip=f"10.1.{i}.1") for i in range(4)]
        results[name] = [(r.status_code, r.json()["detail"]) for r in answers]
        limited_answer = answers[-1]
        assert_problem(limited_answer, 429)
        assert int(limited_answer.headers["retry-after"]) >= 1
    assert results["alice"] == results["nobody_here"]  # the same answers: existence not revealed
    # even the right password waits now: the account is being guessed at
    assert (await _login(app, "alice", PASSWORD, ip="10.9.9.9")).status_code == 429
    # other accounts are not affected
    await register(platform, "bob")
    assert (await _login(app, "bob", PASSWORD, ip="10.9.9.9")).status_code == 200


async def test_logins_per_client_address_get_429(platform: Platform, limited) -> None:
    app = limited
    await register(platform, "alice")
    statuses = [
        (await _login(app, f"user{i}", "wrong password", ip="10.2.0.1")).status_code
        for i in range(9)
    ]
    assert statuses == [401] * 8 + [429]
    # another address is still served
    assert (await _login(app, "alice", PASSWORD, ip="10.2.0.2")).status_code == 200


async def test_a_success_clears_the_accounts_failures(platform: Platform, limited) -> None:
    app = limited
    await register(platform, "alice")
    for _ in range(2):
        assert (await _login(app, "alice", "wrong password")).status_code == 401
    assert (await _login(app, "alice", PASSWORD)).status_code == 200
    for _ in range(2):
        assert (await _login(app, "alice", "wrong password")).status_code == 401


async def test_registrations_are_limited_per_client_and_per_account(limited) -> None:
    app = limited

    async def reg(username: str, email: str, ip: str) -> httpx.Response:
        body = {"username": username, "email": email, "password": "long enough pw"}
        return await _post(app, "/api/v1/users/register", body, ip)

    statuses = [
        (await reg(f"user{i}", f"u{i}@example.com", "10.3.0.1")).status_code for i in range(5)
    ]
    assert statuses == [201] * 4 + [429]
    # probing one username from many addresses (enumeration by 409s) is limited too
    probes = [
        (await reg("user0", f"p{i}@example.com", f"10.4.0.{i}")).status_code for i in range(3)
    ]
    assert probes == [409, 429, 429]  # its registration counted once, the first probe twice
    assert_problem(await reg("user0", "p9@example.com", "10.4.0.9"), 429)


async def test_wrong_password_and_unknown_user_take_the_same_path(
    platform: Platform, monkeypatch
) -> None:
    await register(platform, "alice")
    passwords = platform.apps["users"].state.passwords
    hashes_checked: list[bool] = []
    hasher = passwords._hasher

    class Spy:
        def verify(self, password_hash: str, password: str) -> bool:
            hashes_checked.append(password_hash == passwords._dummy_hash)
            return hasher.verify(password_hash, password)

        def __getattr__(self, name: str):
            return getattr(hasher, name)

    monkeypatch.setattr(passwords, "_hasher", Spy())
    wrong = await platform.users.post(
        "/api/v1/users/login", json={"username": "alice", "password": "nope nope"}
    )
    unknown = await platform.users.post(
        "/api/v1/users/login", json={"username": "nobody", "password": "nope nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers.keys() - {"x-request-id", "content-length"} == (
        unknown.headers.keys() - {"x-request-id", "content-length"}
    )
    # one argon2 verification each: the unknown user's against a dummy hash of the same cost
    assert hashes_checked == [False, True]


@pytest.mark.parametrize("service", ["users", "products", "orders", "payments"])
async def test_bodies_are_limited_and_security_headers_set(platform: Platform, service) -> None:
    client = getattr(platform, service)
    big = b"{" + b" " * (70 * 1024) + b"}"
    response = await client.post(
        f"/api/v1/{service}" if service != "users" else "/api/v1/users/register",
        content=big,
        headers={**platform.admin, "content-type": "application/json"},
    )
    assert_problem(response, 413)
    for header, value in {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "cache-control": "no-store",
        "referrer-policy": "no-referrer",
    }.items():
        assert response.headers[header] == value
    assert "strict-transport-security" in response.headers
    assert "default-src 'none'" in response.headers["content-security-policy"]
