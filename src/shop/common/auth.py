"""Tokens: user tokens (EdDSA JWTs signed by the user service) and service tokens (HS256).

Every service verifies user tokens locally with the user service's public keys (a JWKS,
fetched once and cached; refetched when an unknown ``kid`` appears), so no call to the user
service sits on a request path. The algorithm is pinned per kind of token, never read from the
token: ``alg: none``, an RS/HS token claiming a user key, or a user token signed with the
internal key all fail closed with 401.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shop.common.errors import Unauthorized

USER_ALG = "EdDSA"
SERVICE_ALG = "HS256"
SERVICE_ISSUER = "shop-internal"
ROLES = ("customer", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (``user_id`` and ``role``) or another service (``service``)."""

    user_id: int | None
    role: str
    service: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_service(self) -> bool:
        return self.service is not None

    @property
    def is_privileged(self) -> bool:
        return self.is_admin or self.is_service

    def may_access_user(self, user_id: int) -> bool:
        return self.is_privileged or self.user_id == user_id


# --- keys ----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
    # RFC 7638 thumbprint: the key's id is derived from the key itself.
    thumbprint = hashlib.sha256(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode())
    return {**jwk, "kid": _b64(thumbprint.digest()), "alg": USER_ALG, "use": "sig"}


def generate_private_key_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_private_key(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the JWT signing key must be an Ed25519 private key (PEM, PKCS#8)")
    return key


class SigningKeys:
    """The user service's signing key, plus earlier public keys still accepted until expiry."""

    def __init__(self, current_pem: str, previous_pems: tuple[str, ...] = ()) -> None:
        self._current = load_private_key(current_pem)
        self.current_jwk = public_jwk(self._current.public_key())
        self._previous = [public_jwk(load_private_key(p).public_key()) for p in previous_pems]

    @property
    def kid(self) -> str:
        return self.current_jwk["kid"]

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._current, algorithm=USER_ALG, headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.current_jwk, *self._previous]}


class KeySet:
    """Public keys by ``kid``: static (a JWKS document) or fetched from a JWKS URL and cached."""

    REFRESH_MIN_INTERVAL = 10.0

    def __init__(
        self,
        jwks: dict[str, Any] | None = None,
        *,
        url: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._keys: dict[str, Any] = {}
        self._url, self._client = url, client
        self._fetched_at = 0.0
        if jwks:
            self._load(jwks)

    @classmethod
    def from_file(cls, path: Path) -> KeySet:
        return cls(json.loads(path.read_text()))

    def _load(self, jwks: dict[str, Any]) -> None:
        keys = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and "kid" in jwk:
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm=USER_ALG).key
        self._keys = keys

    async def get(self, kid: str) -> Any | None:
        if kid not in self._keys and self._url and self._client is not None:
            now = time.monotonic()
            if now - self._fetched_at >= self.REFRESH_MIN_INTERVAL or not self._keys:
                self._fetched_at = now
                try:
                    response = await self._client.get(self._url, timeout=3.0)
                    response.raise_for_status()
                    self._load(response.json())
                except (httpx.HTTPError, ValueError):
                    return None
        return self._keys.get(kid)


class TokenVerifier:
    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        service_secret: str,
        leeway: float = 5.0,
    ) -> None:
        self._keys, self._issuer, self._audience = keys, issuer, audience
        self._service_secret = service_secret
        self._leeway = leeway

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("The token is malformed.") from None
        alg = header.get("alg")
        try:
            if alg == USER_ALG:
                key = await self._keys.get(str(header.get("kid", "")))
                if key is None:
                    raise Unauthorized("The token was signed with an unknown key.")
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[USER_ALG],
                    issuer=self._issuer,
                    audience=self._audience,
                    leeway=self._leeway,
                    options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                )
                if claims.get("typ") != "access" or claims.get("role") not in ROLES:
                    raise Unauthorized("The token is not an access token.")
                return Principal(user_id=int(claims["sub"]), role=claims["role"])
            if alg == SERVICE_ALG:
                claims = jwt.decode(
                    token,
                    self._service_secret,
                    algorithms=[SERVICE_ALG],
                    issuer=SERVICE_ISSUER,
                    audience=SERVICE_ISSUER,
                    leeway=self._leeway,
                    options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                )
                service = str(claims["sub"]).removeprefix("service:")
                return Principal(user_id=None, role="service", service=service)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except (jwt.PyJWTError, ValueError, KeyError):
            raise Unauthorized("The token is invalid.") from None
        raise Unauthorized("The token's algorithm is not accepted.")


def issue_access_token(
    keys: SigningKeys, *, user_id: int, role: str, issuer: str, audience: str, ttl: int
) -> str:
    now = int(time.time())
    return keys.sign(
        {
            "iss": issuer,
            "aud": audience,
            "sub": str(user_id),
            "role": role,
            "typ": "access",
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
    )


class ServiceTokens:
    """Mints this service's own token for calls to other services, reusing it until near expiry."""

    def __init__(self, service: str, secret: str, ttl: int = 300) -> None:
        self._service, self._secret, self._ttl = service, secret, ttl
        self._token, self._expires = "", 0.0

    def token(self) -> str:
        now = time.time()
        if now > self._expires - 30:
            self._token = jwt.encode(
                {
                    "iss": SERVICE_ISSUER,
                    "aud": SERVICE_ISSUER,
                    "sub": f"service:{self._service}",
                    "iat": int(now),
                    "exp": int(now) + self._ttl,
                },
                self._secret,
                algorithm=SERVICE_ALG,
            )
            self._expires = now + self._ttl
        return self._token
