from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from shop.common.auth import (
    KeySet,
    ServiceTokens,
    SigningKeys,
    TokenVerifier,
    generate_private_key_pem,
    issue_access_token,
)
from shop.common.errors import Unauthorized

SECRET = "unit-test-service-secret-of-32-bytes-or-more"


@pytest.fixture
def keys() -> SigningKeys:
    return SigningKeys(generate_private_key_pem())


@pytest.fixture
def verifier(keys: SigningKeys) -> TokenVerifier:
    return TokenVerifier(
        KeySet(keys.jwks()), issuer="shop-users", audience="shop", service_secret=SECRET, leeway=0
    )


def token(keys: SigningKeys, **over: object) -> str:
    now = int(time.time())
    claims = {
        "iss": "shop-users",
        "aud": "shop",
        "sub": "5",
        "role": "customer",
        "typ": "access",
        "iat": now,
        "exp": now + 60,
        **over,
    }
    return keys.sign(claims)


async def test_a_valid_user_token_gives_the_principal(keys, verifier) -> None:
    principal = await verifier.verify(
        issue_access_token(
            keys, user_id=5, role="admin", issuer="shop-users", audience="shop", ttl=60
        )
    )
    assert (principal.user_id, principal.role, principal.is_admin) == (5, "admin", True)


async def test_a_user_token_carries_the_users_contact(keys, verifier) -> None:
    signed = issue_access_token(
        keys,
        user_id=5,
        role="customer",
        issuer="shop-users",
        audience="shop",
        ttl=60,
        username="mia",
        email="mia@example.com",
    )
    assert jwt.decode(signed, options={"verify_signature": False})["email"] == "mia@example.com"
    principal = await verifier.verify(signed)
    assert (principal.username, principal.email) == ("mia", "mia@example.com")


@pytest.mark.parametrize("contact", [{}, {"username": 7, "email": ["x"]}, {"email": ""}])
async def test_a_token_without_a_contact_gives_none(keys, verifier, contact) -> None:
    principal = await verifier.verify(token(keys, **contact))
    assert (principal.user_id, principal.username, principal.email) == (5, None, None)


async def test_a_service_token_gives_a_service_principal(verifier) -> None:
    principal = await verifier.verify(ServiceTokens("order-service", SECRET).token())
    assert principal.is_service
    assert principal.service == "order-service"
    assert principal.may_access_user(123)


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 10},
        {"aud": "elsewhere"},
        {"iss": "someone"},
        {"role": "superuser"},
        {"typ": "refresh"},
    ],
)
async def test_bad_claims_are_refused(keys, verifier, claims) -> None:
    with pytest.raises(Unauthorized):
        await verifier.verify(token(keys, **claims))


async def test_alg_none_is_refused(verifier) -> None:
    forged = jwt.encode(
        {
            "sub": "1",
            "role": "admin",
            "iss": "shop-users",
            "aud": "shop",
            "typ": "access",
            "iat": 0,
            "exp": 2**31,
        },
        None,
        algorithm="none",
    )
    with pytest.raises(Unauthorized):
        await verifier.verify(forged)


async def test_a_token_from_another_key_is_refused(verifier) -> None:
    other = SigningKeys(generate_private_key_pem())
    with pytest.raises(Unauthorized):
        await verifier.verify(token(other))


async def test_a_user_token_signed_with_the_service_secret_is_refused(verifier) -> None:
    forged = jwt.encode(
        {
            "sub": "1",
            "role": "admin",
            "iss": "shop-users",
            "aud": "shop",
            "typ": "access",
            "iat": 0,
            "exp": 2**31,
        },
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(Unauthorized):
        await verifier.verify(forged)


async def test_a_service_token_with_a_wrong_secret_is_refused(verifier) -> None:
    with pytest.raises(Unauthorized):
        await verifier.verify(
            ServiceTokens("order-service", "wrong-secret-wrong-secret-wrong-secret").token()
        )


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 5000])
async def test_garbage_is_refused(verifier, garbage) -> None:
    with pytest.raises(Unauthorized):
        await verifier.verify(garbage)


def test_previous_keys_stay_in_the_jwks() -> None:
    old, new = generate_private_key_pem(), generate_private_key_pem()
    rotated = SigningKeys(new, previous_pems=(old,))
    assert [k["kid"] for k in rotated.jwks()["keys"]] == [
        SigningKeys(new).kid,
        SigningKeys(old).kid,
    ]


async def test_a_remembered_token_still_expires(keys, verifier) -> None:
    expires = int(time.time()) + 1
    signed = token(keys, exp=expires)
    assert (await verifier.verify(signed)).user_id == 5  # verified, then remembered
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)  # past exp (leeway 0)
    with pytest.raises(Unauthorized):
        await verifier.verify(signed)


async def test_a_remembered_user_token_fails_once_its_key_is_gone(keys) -> None:
    key_set = KeySet(keys.jwks())
    verifier = TokenVerifier(
        key_set, issuer="shop-users", audience="shop", service_secret=SECRET, leeway=0
    )
    signed = token(keys)
    assert (await verifier.verify(signed)).user_id == 5
    key_set.load(SigningKeys(generate_private_key_pem()).jwks())  # rotated: the old key left
    with pytest.raises(Unauthorized):
        await verifier.verify(signed)


async def test_a_refused_token_is_not_remembered(keys, verifier) -> None:
    forged = token(keys)[:-4] + "AAAA"
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await verifier.verify(forged)
