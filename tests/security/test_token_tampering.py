"""Forged, altered, expired or misdirected tokens: every service answers 401, never 200/500."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shop.common.auth import SigningKeys, generate_private_key_pem, issue_access_token
from tests.integration.conftest import Platform
from tests.security.helpers import PROTECTED, assert_problem

SERVICES = list(PROTECTED)


def claims(**over) -> dict:
    now = int(time.time())
    return {
        "iss": "shop-users",
        "aud": "shop",
        "sub": "1",
        "role": "admin",
        "typ": "access",
        "iat": now,
        "exp": now + 300,
        **over,
    }


def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forgeries(platform: Platform) -> dict[str, str]:
    """Name -> token. Each claims to be admin user 1; none may be accepted."""
    real = platform.keys
    other = SigningKeys(generate_private_key_pem())
    good = real.sign(claims())
    header, payload, signature = good.split(".")
    other_signature = real.sign(claims(sub="9")).split(".")[2]
    public_pem = real.current_jwk["x"].encode()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "alg none": jwt.encode(claims(), None, algorithm="none"),
        "alg none, kid of the real key": f"{b64({'alg': 'none', 'kid': real.kid})}.{payload}.",
        "alg NONE upper-case": f"{b64({'alg': 'NONE', 'kid': real.kid})}.{payload}.",
        "another Ed25519 key": other.sign(claims()),
        "another key under the real kid": jwt.encode(
            claims(), other._current, algorithm="EdDSA", headers={"kid": real.kid}
        ),
        "HS256 keyed with the public key (confusion)": jwt.encode(
            claims(), public_pem, algorithm="HS256", headers={"kid": real.kid}
        ),
        "HS256 keyed with a guess": jwt.encode(claims(), "secret", algorithm="HS256"),
        "RS256 with its own key": jwt.encode(
            claims(), rsa_key, algorithm="RS256", headers={"kid": real.kid}
        ),
        "ES256 with its own key": jwt.encode(
            claims(), ec_key, algorithm="ES256", headers={"kid": real.kid}
        ),
        "payload swapped, old signature": f"{header}.{b64(claims(sub='2'))}.{signature}",
        "signature stripped": f"{header}.{payload}.",
        "signature of another token": f"{header}.{payload}.{other_signature}",
        "expired": real.sign(claims(exp=int(time.time()) - 60, iat=int(time.time()) - 400)),
        "not yet valid": real.sign(claims(nbf=int(time.time()) + 3600)),
        "wrong audience": real.sign(claims(aud="another-app")),
        "audience list without ours": real.sign(claims(aud=["x", "y"])),
        "wrong issuer": real.sign(claims(iss="evil-issuer")),
        "no exp": real.sign({k: v for k, v in claims().items() if k != "exp"}),
        "no sub": real.sign({k: v for k, v in claims().items() if k != "sub"}),
        "unknown role": real.sign(claims(role="superuser")),
        "refresh-typed token": real.sign(claims(typ="refresh")),
        "jku/x5u pointing elsewhere": jwt.encode(
            claims(),
            other._current,
            algorithm="EdDSA",
            headers={"kid": other.kid, "jku": "https://evil.example/jwks.json"},
        ),
        "embedded jwk": jwt.encode(
            claims(), other._current, algorithm="EdDSA", headers={"jwk": other.current_jwk}
        ),
        "garbage": "not.a.token",
        "empty segments": "..",
        "huge": "a" * 20_000,
    }


async def _call(platform: Platform, service: str, token: str | None, scheme: str = "Bearer"):
    method, path = PROTECTED[service]
    headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
    kwargs = {"json": {"name": "x", "price": "1.00"}} if method == "POST" else {}
    return await getattr(platform, service).request(
        method, path.format(uid=1), headers=headers, **kwargs
    )


@pytest.mark.parametrize("service", SERVICES)
async def test_forged_tokens_are_401_everywhere(platform: Platform, service: str) -> None:
    for name, token in forgeries(platform).items():
        response = await _call(platform, service, token)
        assert response.status_code == 401, f"{service}: {name}: {response.status_code}"
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("service", SERVICES)
async def test_missing_or_mangled_authorization_is_401(platform: Platform, service: str) -> None:
    good = issue_access_token(
        platform.keys, user_id=1, role="admin", issuer="shop-users", audience="shop", ttl=60
    )
    assert (await _call(platform, service, None)).status_code == 401
    for scheme in ("Basic", "Token", "bearer\t"):
        assert (await _call(platform, service, good, scheme=scheme)).status_code == 401
    assert (await _call(platform, service, good + "x")).status_code == 401
    # and the genuine token works, so the 401s above are about the tampering
    assert (await _call(platform, service, good)).status_code in (200, 201)


async def test_a_user_token_cannot_pass_as_a_service_token(platform: Platform) -> None:
    # Service calls use HS256 with the internal secret; a user's EdDSA token claiming
    # sub=service:order-service is still just a user token (its role decides, here: refused).
    forged = platform.keys.sign(claims(sub="service:order-service", role="service"))
    response = await platform.products.post(
        "/api/v1/reservations",
        json={"order_id": 1, "lines": [{"product_id": 1, "quantity": 1}]},
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert_problem(response, 401)
