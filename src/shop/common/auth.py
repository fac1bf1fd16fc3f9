"""Tokens: user tokens (EdDSA JWTs signed by the user service) and service tokens (HS256).

Every service verifies user tokens locally with the user service's public keys (a JWKS,
fetched at start-up before the service says it is ready, refreshed periodically and when an
unknown ``kid`` appears), so no call to the user service sits on a request path. The algorithm
is pinned per kind of token, never read from the token: ``alg: none``, an RS/HS token claiming
a user key, or a user token signed with the internal key all fail closed with 401.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import math
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shop.common.errors import ServiceUnavailable, Unauthorized
from shop.common.types import JsonObject

USER_ALG = "EdDSA"
SERVICE_ALG = "HS256"
SERVICE_ISSUER = "shop-internal"
ROLES = ("customer", "admin")
VERIFIED_CACHE = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (``user_id`` and ``role``) or another service (``service``).

    A user's ``username`` and ``email`` are as the user service signed them into the token
    (its contact at login); None for a service, or a token issued without them."""

    user_id: int | None
    role: str
    service: str | None = None
    username: str | None = None
    email: str | None = None

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
    """The user service's signing key, plus public keys it publishes but does not sign with:
    earlier keys (tokens they signed stay valid until they expire) and the next key (published
    ahead of use, so verifiers know it before the first token it signs)."""

    def __init__(
        self,
        current_pem: str,
        previous_pems: tuple[str, ...] = (),
        *,
        published: tuple[Mapping[str, str], ...] = (),
    ) -> None:
        self._current = load_private_key(current_pem)
        self.current_jwk = public_jwk(self._current.public_key())
        self._previous = [public_jwk(load_private_key(p).public_key()) for p in previous_pems]
        seen = {self.kid, *(k["kid"] for k in self._previous)}
        for jwk in published:
            if jwk.get("kid") not in seen:
                seen.add(jwk["kid"])
                self._previous.append(dict(jwk))

    @property
    def kid(self) -> str:
        return self.current_jwk["kid"]

    def sign(self, claims: dict[str, object]) -> str:
        return jwt.encode(claims, self._current, algorithm=USER_ALG, headers={"kid": self.kid})

    def jwks(self) -> JsonObject:
        return {"keys": [self.current_jwk, *self._previous]}


# Fetches a JSON document (the JWKS) from a URL; raises OSError, http.client.HTTPException or
# ValueError when it cannot.
FetchJson = Callable[[str], Awaitable[object]]


def _get_json(url: str, timeout: float) -> object:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (a configured URL)
        return json.loads(response.read())


async def fetch_json(url: str) -> object:
    """GET ``url`` as JSON with the standard library, off the event loop. The JWKS is fetched
    a few times an hour, so no HTTP client library is worth its memory for it (httpx costs a
    service several MB of RSS; docs/performance.md, "Memory"). HTTP errors raise
    ``urllib.error.HTTPError``, an OSError."""
    return await asyncio.to_thread(_get_json, url, 3.0)


class KeysUnavailable(ServiceUnavailable):
    """A token names a key this service does not hold, and the JWKS cannot be fetched now."""

    def __init__(self) -> None:
        super().__init__("The keys that verify tokens cannot be fetched right now; retry.")


class KeySet:
    """Public keys by ``kid``: static (a JWKS document) or fetched from a JWKS URL and cached.

    A fetched set is first fetched by :meth:`kept_fresh` (the service's lifespan), retried
    until it succeeds: until then :attr:`ready` is false, and so is the service's readiness. It
    is refreshed in the background once older than ``max_age``, and at once when a token names
    an unknown ``kid``. Unknown kids cost at most one fetch per ``min_refresh_interval`` (a
    flood of made-up kids cannot hammer the user service); a request with an unknown kid waits
    for a fetch that started after it arrived, so a key published before the request is always
    found. When that fetch fails, the kid is not known to be unknown: :class:`KeysUnavailable`
    (a 503 the client may retry), never a 401 for a token that may be good.
    """

    def __init__(
        self,
        jwks: object = None,
        *,
        url: str | None = None,
        fetch: FetchJson = fetch_json,
        max_age: float = 300.0,
        min_refresh_interval: float = 2.0,
    ) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._url, self._fetch = url, fetch
        self._max_age, self._min_interval = max_age, min_refresh_interval
        self._fetched_at = 0.0  # when the last successful fetch started (monotonic)
        self._fetch_started = -math.inf
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None
        self._last_fetch_failed = False
        self.fetches = 0
        if jwks:
            self.load(jwks)

    @property
    def ready(self) -> bool:
        """The set can verify tokens: static keys, or a fetch of the JWKS has succeeded."""
        return self._url is None or self._fetched_at > 0

    @asynccontextmanager
    async def kept_fresh(self, *, retry_every: float = 0.2) -> AsyncIterator[None]:
        """While open: fetch the JWKS until a fetch succeeds (every ``retry_every`` seconds,
        doubling to 2 s), then again every ``max_age``, so keys published ahead of a rotation
        arrive before their first token. Does not block: the service answers (not ready)
        meanwhile. A set without a URL has nothing to fetch."""
        if self._url is None:
            yield
            return

        async def keep() -> None:
            delay = retry_every
            while True:
                await self._refresh(requested_at=time.monotonic())
                if self._last_fetch_failed:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                else:
                    delay = retry_every
                    await asyncio.sleep(self._max_age)

        task = asyncio.create_task(keep(), name="jwks")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    @classmethod
    def from_file(cls, path: Path) -> KeySet:
        return cls(json.loads(path.read_text()))

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def load(self, jwks: object) -> None:
        """Replace the keys with a JWKS document's Ed25519 keys; ValueError if it is not a
        JWKS (an object whose ``keys`` is a list of objects)."""
        listed = jwks.get("keys", []) if isinstance(jwks, dict) else None
        if not isinstance(listed, list) or not all(isinstance(k, dict) for k in listed):
            raise ValueError("not a JWKS document")
        keys = {}
        for jwk in listed:
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and "kid" in jwk:
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm=USER_ALG).key
        self._keys = keys

    async def get(self, kid: str) -> Ed25519PublicKey | None:
        if self._url:
            now = time.monotonic()
            if kid not in self._keys:
                await self._refresh(requested_at=now)
                if kid not in self._keys and self._last_fetch_failed:
                    raise KeysUnavailable
            elif now - self._fetched_at > self._max_age and self._background is None:
                self._background = asyncio.create_task(self._refresh(requested_at=now))
                self._background.add_done_callback(self._background_done)
        return self._keys.get(kid)

    def _background_done(self, _: asyncio.Task[None]) -> None:
        self._background = None

    async def _refresh(self, *, requested_at: float) -> None:
        async with self._lock:
            if self._fetch_started >= requested_at:
                return  # a fetch that began after this request has just finished
            # Throttled once the keys are held; before that, a fetch waits only for the one
            # in flight (the lock), so start-up readiness is not held back by the throttle.
            wait = self._fetch_started + self._min_interval - time.monotonic()
            if wait > 0 and self.ready:
                await asyncio.sleep(wait)
            self._fetch_started = started = time.monotonic()
            self.fetches += 1
            assert self._url is not None
            try:
                self.load(await self._fetch(self._url))
            except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
                self._last_fetch_failed = True  # keep the keys we have
                return
            self._fetched_at = started
            self._last_fetch_failed = False


# The (kid, key) that verified a user token.
Signer = tuple[str, Ed25519PublicKey]


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
        # Verified tokens: token -> (principal, exp, (kid, key) that verified a user token).
        self._verified: dict[str, tuple[Principal, float, Signer | None]] = {}

    @property
    def keys(self) -> KeySet:
        return self._keys

    async def verify(self, token: str) -> Principal:
        """The token's principal, or ``Unauthorized``.

        A token verified once is remembered (at most ``VERIFIED_CACHE`` of them, oldest
        forgotten first) until its ``exp``: a repeat costs a dict lookup instead of a signature
        check (the order path presents the same service token on every call; 3-11% of a
        service's CPU in the order profile, docs/performance.md). A remembered user token
        still fails once its key leaves the key set (rotation), as the signature check would.
        """
        cached = self._verified.get(token)
        if cached is not None:
            principal, exp, signer = cached
            if time.time() < exp and (
                signer is None or await self._keys.get(signer[0]) is signer[1]
            ):
                return principal
            self._verified.pop(token, None)
        principal, exp, key = await self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, exp, key)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float, Signer | None]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("The token is malformed.") from None
        alg = header.get("alg")
        try:
            if alg == USER_ALG:
                kid = str(header.get("kid", ""))
                key = await self._keys.get(kid)
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
                principal = Principal(
                    user_id=int(claims["sub"]),
                    role=claims["role"],
                    username=_text(claims.get("username")),
                    email=_text(claims.get("email")),
                )
                return principal, float(claims["exp"]), (kid, key)
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
                principal = Principal(user_id=None, role="service", service=service)
                return principal, float(claims["exp"]), None
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except (jwt.PyJWTError, ValueError, KeyError):
            raise Unauthorized("The token is invalid.") from None
        raise Unauthorized("The token's algorithm is not accepted.")


def _text(claim: object) -> str | None:
    return claim if isinstance(claim, str) and claim else None


def issue_access_token(
    keys: SigningKeys,
    *,
    user_id: int,
    role: str,
    issuer: str,
    audience: str,
    ttl: int,
    username: str | None = None,
    email: str | None = None,
) -> str:
    """A user's access token. ``username`` and ``email`` (OIDC's standard claims) are the
    user's contact as at issue: an order records them, so its mails need no look-up."""
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "sub": str(user_id),
        "role": role,
        "typ": "access",
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    if username is not None:
        claims["username"] = username
    if email is not None:
        claims["email"] = email
    return keys.sign(claims)


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
