"""Refresh tokens: stored as hashes, single use (rotated), revocable by logout; a replayed
token revokes its whole login; access tokens are short-lived."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.integration.conftest import Platform
from tests.security.helpers import PASSWORD, assert_problem, register


async def login(platform: Platform, username: str) -> dict[str, Any]:
    response = await platform.users.post(
        "/api/v1/users/login", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def refresh(platform: Platform, token: str):
    return await platform.users.post("/api/v1/users/refresh", json={"refresh_token": token})


async def test_login_returns_a_short_access_token_and_a_refresh_token(platform: Platform) -> None:
    alice = await register(platform, "alice")
    tokens = await login(platform, "alice")
    assert set(tokens) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
    }
    assert 0 < tokens["expires_in"] <= 900 < tokens["refresh_expires_in"]
    stored = await platform.sql(
        "users", "SELECT token_hash FROM refresh_tokens WHERE user_id = $1", alice["id"]
    )
    # only the hash is kept: a database leak gives no usable refresh token
    assert [bytes(r["token_hash"]) for r in stored] == [
        hashlib.sha256(tokens["refresh_token"].encode()).digest()
    ]


async def test_refresh_rotates_and_each_token_works_once(platform: Platform) -> None:
    alice = await register(platform, "alice")
    first = await login(platform, "alice")
    second = await refresh(platform, first["refresh_token"])
    assert second.status_code == 200
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"]
    me = await platform.users.get(
        f"/api/v1/users/{alice['id']}",
        headers={"Authorization": f"Bearer {new['access_token']}"},
    )
    assert me.status_code == 200
    third = await refresh(platform, new["refresh_token"])
    assert third.status_code == 200


async def test_a_replayed_refresh_token_revokes_the_whole_login(platform: Platform) -> None:
    await register(platform, "alice")
    stolen = (await login(platform, "alice"))["refresh_token"]
    legit = (await refresh(platform, stolen)).json()["refresh_token"]
    # the thief (or the victim) presents the used token again: everything from it is revoked
    assert_problem(await refresh(platform, stolen), 401)
    assert_problem(await refresh(platform, legit), 401)
    # another login (another family) is untouched
    other = (await login(platform, "alice"))["refresh_token"]
    assert (await refresh(platform, other)).status_code == 200


async def test_logout_revokes_the_refresh_token(platform: Platform) -> None:
    await register(platform, "alice")
    tokens = await login(platform, "alice")
    later = (await refresh(platform, tokens["refresh_token"])).json()["refresh_token"]
    response = await platform.users.post("/api/v1/users/logout", json={"refresh_token": later})
    assert response.status_code == 204
    assert_problem(await refresh(platform, later), 401)
    again = await platform.users.post("/api/v1/users/logout", json={"refresh_token": later})
    assert again.status_code == 204  # idempotent; unknown tokens are not distinguished
    unknown = await platform.users.post("/api/v1/users/logout", json={"refresh_token": "x" * 43})
    assert unknown.status_code == 204


async def test_invalid_and_expired_refresh_tokens_are_401(platform: Platform) -> None:
    alice = await register(platform, "alice")
    tokens = await login(platform, "alice")
    await platform.sql(
        "users",
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1",
        alice["id"],
    )
    assert_problem(await refresh(platform, tokens["refresh_token"]), 401)
    assert_problem(await refresh(platform, "y" * 43), 401)
    # an access token is not a refresh token (and is too long for the field anyway)
    response = await refresh(platform, tokens["access_token"])
    assert response.status_code in (401, 422)
    assert_problem(await refresh(platform, ""), 422)


async def test_deleting_a_user_deletes_its_refresh_tokens(platform: Platform) -> None:
    alice = await register(platform, "alice")
    tokens = await login(platform, "alice")
    await platform.sql("users", "DELETE FROM users WHERE id = $1", alice["id"])
    assert (
        await platform.sql("users", "SELECT 1 FROM refresh_tokens WHERE user_id = $1", alice["id"])
        == []
    )
    assert_problem(await refresh(platform, tokens["refresh_token"]), 401)
