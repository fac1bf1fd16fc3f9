"""The user service's signing keys, kept in a secret store and rotated.

The key ring lives at one secret path (``secret/shop/users`` in Vault) as four values::

    SHOP_JWT_PRIVATE_KEY       the current key (PEM): signs every new token
    SHOP_JWT_NEXT_PRIVATE_KEY  the next key: published in the JWKS now, signs after the next
                               rotation, so every verifier knows it before its first token
    SHOP_JWT_PREVIOUS_KEYS     earlier public keys (JSON), published until the last token they
                               signed has expired
    SHOP_JWT_ROTATED_AT        when the current key started signing (Unix seconds)

A rotation promotes next to current, current to previous (kept for ``keep_previous``
seconds), and makes a new next key. It is a check-and-set write: replicas rotating on the same
schedule cannot overwrite each other; the loser adopts the winner's ring.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import ClassVar

from shop.common.auth import SigningKeys, generate_private_key_pem, load_private_key, public_jwk
from shop.common.secrets import SecretSource, VaultSecretSource, VersionConflict
from shop.common.vault import Vault, VaultConfig
from shop.users.settings import UsersSettings

KEYRING_PATH = "users"
CURRENT = "SHOP_JWT_PRIVATE_KEY"
NEXT = "SHOP_JWT_NEXT_PRIVATE_KEY"
PREVIOUS = "SHOP_JWT_PREVIOUS_KEYS"
ROTATED_AT = "SHOP_JWT_ROTATED_AT"


class KeyRingMissing(Exception):
    """No signing key is stored yet (run scripts/vault-setup.sh or `shop rotate-keys`)."""


@dataclass(frozen=True, slots=True)
class KeyRing:
    current_pem: str
    next_pem: str
    # Public JWKs of earlier keys, each with the time after which it is dropped.
    previous: tuple[tuple[dict[str, str], float], ...]
    rotated_at: float
    version: int = 0

    @classmethod
    def new(cls, *, now: float, current_pem: str | None = None) -> KeyRing:
        return cls(
            current_pem=current_pem or generate_private_key_pem(),
            next_pem=generate_private_key_pem(),
            previous=(),
            rotated_at=now,
        )

    @classmethod
    def from_values(cls, values: dict[str, str], version: int) -> KeyRing:
        if not values.get(CURRENT):
            raise KeyRingMissing(f"no {CURRENT} stored")
        previous = tuple(
            (dict(item["jwk"]), float(item["drop_after"]))
            for item in json.loads(values.get(PREVIOUS) or "[]")
        )
        return cls(
            current_pem=values[CURRENT],
            # A store seeded with only the current key (e.g. by hand) gets a next key on the
            # first rotation; until then nothing is published ahead.
            next_pem=values.get(NEXT) or "",
            previous=previous,
            rotated_at=float(values.get(ROTATED_AT) or 0),
            version=version,
        )

    def values(self) -> dict[str, str]:
        return {
            CURRENT: self.current_pem,
            NEXT: self.next_pem,
            PREVIOUS: json.dumps(
                [{"jwk": jwk, "drop_after": drop_after} for jwk, drop_after in self.previous]
            ),
            ROTATED_AT: str(int(self.rotated_at)),
        }

    @property
    def kid(self) -> str:
        return public_jwk(load_private_key(self.current_pem).public_key())["kid"]

    def signing_keys(self, *, now: float) -> SigningKeys:
        published = [jwk for jwk, drop_after in self.previous if drop_after > now]
        if self.next_pem:
            published.insert(0, public_jwk(load_private_key(self.next_pem).public_key()))
        return SigningKeys(self.current_pem, published=tuple(published))

    def rotated(self, *, now: float, keep_previous: float) -> KeyRing:
        retiring = public_jwk(load_private_key(self.current_pem).public_key())
        kept = tuple((jwk, drop) for jwk, drop in self.previous if drop > now)
        return KeyRing(
            current_pem=self.next_pem or generate_private_key_pem(),
            next_pem=generate_private_key_pem(),
            previous=((retiring, now + keep_previous), *kept),
            rotated_at=now,
            version=self.version,
        )


class KeyStore:
    """The key ring in a secret store (Vault KV v2 in production)."""

    def __init__(self, source: SecretSource, path: str = KEYRING_PATH) -> None:
        self.source, self.path = source, path

    async def load(self) -> KeyRing:
        secret = await self.source.aread(self.path)
        return KeyRing.from_values(secret.values, secret.version)

    async def initialise(self, *, now: float | None = None) -> KeyRing:
        """Store a first ring if none exists (keeping other values at the path)."""
        secret = await self.source.aread(self.path)
        if secret.values.get(CURRENT):
            return KeyRing.from_values(secret.values, secret.version)
        ring = KeyRing.new(now=time.time() if now is None else now)
        try:
            version = await self.source.awrite(
                self.path, {**secret.values, **ring.values()}, cas=secret.version
            )
        except VersionConflict:
            return await self.load()
        return KeyRing(ring.current_pem, ring.next_pem, ring.previous, ring.rotated_at, version)

    async def rotate(self, *, keep_previous: float, now: float | None = None) -> KeyRing:
        """Rotate once. If another writer rotated first, return its ring instead."""
        now = time.time() if now is None else now
        secret = await self.source.aread(self.path)
        ring = KeyRing.from_values(secret.values, secret.version).rotated(
            now=now, keep_previous=keep_previous
        )
        try:
            version = await self.source.awrite(
                self.path, {**secret.values, **ring.values()}, cas=secret.version
            )
        except VersionConflict:
            return await self.load()
        return KeyRing(ring.current_pem, ring.next_pem, ring.previous, ring.rotated_at, version)


class RotatorSettings(UsersSettings):
    """The user service's settings as `shop rotate-keys` needs them: Vault access only to the
    key ring (policy shop-key-rotator), so no other secret path is read at start."""

    vault_kv_paths: ClassVar[tuple[str, ...]] = ()


async def rotate_vault_keys(settings: UsersSettings) -> tuple[str | None, KeyRing]:
    """Rotate the ring in the configured Vault once (or create it). Returns the kid that was
    signing before (None if there was no ring) and the new ring."""
    config = VaultConfig.from_fields(settings.vault_fields())
    if config is None:
        raise KeyRingMissing("key rotation needs Vault: set SHOP_VAULT_ADDR and its auth")
    vault = await asyncio.to_thread(Vault.connect, config, default_role=settings.service_name)
    try:
        store = KeyStore(VaultSecretSource(vault))
        try:
            before = (await store.load()).kid
        except KeyRingMissing:
            return None, await store.initialise()
        return before, await store.rotate(keep_previous=settings.keep_previous_key_seconds)
    finally:
        vault.close()
