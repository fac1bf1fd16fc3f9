from __future__ import annotations

import pytest

from tests.integration.conftest import ADMIN_PASSWORD, Platform

pytestmark = pytest.mark.asyncio


async def register(platform: Platform, username: str = "john_doe", **kw: str) -> dict:
    body = {
        "username": username,
        "email": kw.get("email", f"{username}@example.com"),
        "password": kw.get("password", "correct horse battery"),
    }
    response = await platform.users.post("/api/v1/users/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_register_returns_the_user_without_secrets(platform: Platform) -> None:
    user = await register(platform)
    assert set(user) == {"id", "username", "email", "role", "created_at"}
    assert user["role"] == "customer"
    stored = await platform.sql(
        "users", "SELECT password_hash FROM users WHERE id = $1", user["id"]
    )
    assert stored[0]["password_hash"].startswith("$argon2id$")


@pytest.mark.parametrize("field", ["username", "email"])
async def test_duplicate_username_or_email_is_409(platform: Platform, field: str) -> None:
    await register(platform, "first_user", email="same@example.com")
    body = {
        "username": "first_user" if field == "username" else "second_user",
        "email": "same@example.com" if field == "email" else "other@example.com",
        "password": "long enough pw",
    }
    if field == "username":
        body["username"] = "FIRST_USER"  # case-insensitive
    response = await platform.users.post("/api/v1/users/register", json=body)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"username": "ab", "email": "a@example.com", "password": "12345678"}, "username"),
        ({"username": "bad name!", "email": "a@example.com", "password": "12345678"}, "username"),
        ({"username": "okname", "email": "not-an-email", "password": "12345678"}, "email"),
        ({"username": "okname", "email": "a@example.com", "password": "short"}, "password"),
        (
            {
                "username": "okname",
                "email": "a@example.com",
                "password": "12345678",
                "role": "admin",
            },
            "role",
        ),
    ],
)
async def test_invalid_registration_is_422_with_the_field(
    platform: Platform, body: dict, loc: str
) -> None:
    response = await platform.users.post("/api/v1/users/register", json=body)
    assert response.status_code == 422
    problem = response.json()
    assert problem["status"] == 422
    assert any(loc in e["loc"] for e in problem["errors"])
    assert await platform.sql("users", "SELECT 1 FROM users WHERE role = 'customer'") == []


async def test_login_by_username_or_email_returns_a_token(platform: Platform) -> None:
    user = await register(platform)
    for login in ("john_doe", "JOHN_DOE@example.com"):
        response = await platform.users.post(
            "/api/v1/users/login", json={"username": login, "password": "correct horse battery"}
        )
        assert response.status_code == 200
        token = response.json()
        assert token["token_type"] == "bearer"
        assert token["expires_in"] > 0
    me = await platform.users.get(
        f"/api/v1/users/{user['id']}", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert me.json()["username"] == "john_doe"


async def test_wrong_password_and_unknown_user_get_the_same_401(platform: Platform) -> None:
    await register(platform)
    wrong = await platform.users.post(
        "/api/v1/users/login", json={"username": "john_doe", "password": "nope nope"}
    )
    unknown = await platform.users.post(
        "/api/v1/users/login", json={"username": "nobody", "password": "nope nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_bootstrap_admin_can_log_in_and_list_users(platform: Platform) -> None:
    response = await platform.users.post(
        "/api/v1/users/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200
    admin = {"Authorization": f"Bearer {response.json()['access_token']}"}
    await register(platform, "alice")
    page = (await platform.users.get("/api/v1/users?limit=1", headers=admin)).json()
    assert page["limit"] == 1
    assert page["offset"] == 0
    assert page["total"] == 2
    assert len(page["items"]) == 1


async def test_customers_see_only_themselves(platform: Platform) -> None:
    alice, bob = await register(platform, "alice"), await register(platform, "bob")
    as_alice = platform.token(alice["id"])
    assert (
        await platform.users.get(f"/api/v1/users/{bob['id']}", headers=as_alice)
    ).status_code == 404
    assert (await platform.users.get("/api/v1/users", headers=as_alice)).status_code == 403
    assert (await platform.users.get("/api/v1/users")).status_code == 401


async def test_jwks_publishes_the_signing_key(platform: Platform) -> None:
    jwks = (await platform.users.get("/.well-known/jwks.json")).json()
    assert jwks["keys"][0]["kty"] == "OKP"
    assert "d" not in jwks["keys"][0]


async def test_login_upgrades_a_hash_of_other_parameters(platform: Platform) -> None:
    """A hash made with other argon2 parameters is rewritten at the service's on the next
    successful login (check_needs_rehash); a failed login leaves it alone."""
    from argon2 import PasswordHasher

    user = await register(platform, "old_hash_user")
    old = PasswordHasher(time_cost=1, memory_cost=2048, parallelism=2).hash("correct horse battery")
    await platform.sql(
        "users", "UPDATE users SET password_hash = $2 WHERE id = $1", user["id"], old
    )
    wrong = await platform.users.post(
        "/api/v1/users/login", json={"username": "old_hash_user", "password": "not the one"}
    )
    assert wrong.status_code == 401
    stored = await platform.sql(
        "users", "SELECT password_hash FROM users WHERE id = $1", user["id"]
    )
    assert stored[0]["password_hash"] == old

    ok = await platform.users.post(
        "/api/v1/users/login",
        json={"username": "old_hash_user", "password": "correct horse battery"},
    )
    assert ok.status_code == 200, ok.text
    stored = await platform.sql(
        "users", "SELECT password_hash FROM users WHERE id = $1", user["id"]
    )
    new = stored[0]["password_hash"]
    assert new != old
    assert new.startswith("$argon2id$v=19$m=1024,t=1,p=1$")  # the platform fixture's costs
    assert PasswordHasher().verify(new, "correct horse battery")
    again = await platform.users.post(
        "/api/v1/users/login",
        json={"username": "old_hash_user", "password": "correct horse battery"},
    )
    assert again.status_code == 200
