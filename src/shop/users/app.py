"""The user service's app factory: signing keys (and their rotation), limits, bootstrap admin."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

from shop.common.app import create_service_app
from shop.common.auth import KeySet, TokenVerifier, generate_private_key_pem
from shop.common.events.relay import relay_extension, render_as
from shop.common.events.sidecar import RelaySource
from shop.common.logging import get_logger
from shop.common.secrets import VaultSecretSource
from shop.common.vault import Vault
from shop.users import service
from shop.users.api import keys_router, router
from shop.users.keys import KeyRing, KeyRingMissing, KeyStore
from shop.users.limits import AuthLimits
from shop.users.schemas import UserRead
from shop.users.settings import UsersSettings

log = get_logger("shop.users")
PURGE_EVERY_SECONDS = 3600.0


def _signing_pem(settings: UsersSettings) -> str:
    if settings.jwt_private_key is not None:
        return settings.jwt_private_key.get_secret_value()
    if settings.jwt_private_key_file is not None:
        return settings.jwt_private_key_file.read_text()
    if settings.is_production:
        raise RuntimeError("SHOP_JWT_PRIVATE_KEY (or _FILE) is required in production")
    log.warning("no JWT signing key configured: using an ephemeral one (development only)")
    return generate_private_key_pem()


async def open_key_ring(
    settings: UsersSettings, vault: Vault | None
) -> tuple[KeyStore | None, KeyRing]:
    """The signing keys: a rotated ring in Vault when configured, else the configured key."""
    if vault is None:
        ring = KeyRing(_signing_pem(settings), "", (), time.time())
        return None, ring
    store = KeyStore(VaultSecretSource(vault))
    try:
        return store, await store.load()
    except KeyRingMissing:
        if settings.is_production:
            raise RuntimeError(
                "no signing key in Vault: run scripts/vault-setup.sh or `shop rotate-keys`"
            ) from None
        return store, await store.initialise()


def install_keys(app: FastAPI, ring: KeyRing) -> None:
    """Sign with the ring's current key from now on; verify with everything it publishes."""
    keys = ring.signing_keys(now=time.time())
    app.state.signing_keys = keys
    app.state.key_ring = ring
    app.state.verifier_keys.load(keys.jwks())


async def maintain_keys(app: FastAPI, store: KeyStore, settings: UsersSettings) -> None:
    """Reload the ring (another replica or `shop rotate-keys` may have rotated it) and rotate
    it when the current key is old enough. Runs until cancelled."""
    while True:
        await asyncio.sleep(settings.jwt_keys_reload_seconds)
        try:
            ring = await store.load()
            if time.time() - ring.rotated_at >= settings.jwt_rotation_interval_seconds:
                ring = await store.rotate(keep_previous=settings.keep_previous_key_seconds)
                log.info("signing key rotated", kid=ring.kid)
            install_keys(app, ring)  # also drops retired keys whose tokens have all expired
        except Exception:
            log.exception("signing keys not refreshed")


async def purge_tokens(app: FastAPI) -> None:
    while True:
        await asyncio.sleep(PURGE_EVERY_SECONDS)
        try:
            await service.purge_refresh_tokens(db=app.state.db)
        except Exception:
            log.exception("expired refresh tokens not purged")


# The events' data in the REST shape of UserRead: for the in-process relay and `shop relay`.
RENDER = render_as(UserRead)


def relay_source(settings: UsersSettings | None = None) -> RelaySource:
    """What `shop relay users` relays: this service's outbox, with its settings."""
    return RelaySource("users", settings or UsersSettings(), RENDER)


def create_app(settings: UsersSettings | None = None) -> FastAPI:
    settings = settings or UsersSettings()

    @asynccontextmanager
    async def users_runtime(app: FastAPI) -> AsyncIterator[None]:
        store, ring = await open_key_ring(settings, app.state.vault)
        # This service verifies with its own keys; the others fetch them from the JWKS.
        app.state.verifier_keys = KeySet()
        install_keys(app, ring)
        app.state.verifier = TokenVerifier(
            app.state.verifier_keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            service_secret=settings.service_token_secret.get_secret_value(),
        )
        app.state.passwords = service.Passwords(settings)
        app.state.auth_limits = AuthLimits(settings)
        try:
            if await service.ensure_admin(
                db=app.state.db, passwords=app.state.passwords, settings=settings
            ):
                log.info("bootstrap admin created", username=settings.admin_username)
        except (OSError, asyncpg.PostgresError):
            log.warning("bootstrap admin not ensured: database unreachable")
        tasks = [asyncio.create_task(purge_tokens(app))]
        if store is not None:
            tasks.append(asyncio.create_task(maintain_keys(app, store, settings)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await app.state.auth_limits.aclose()

    return create_service_app(
        settings,
        title="shop user service",
        description="Registration, login and user records. Issues the platform's JWTs.",
        routers=[router, keys_router],
        extensions=[users_runtime, relay_extension("users", RENDER)],
    )
