"""The user service's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

from shop.common.app import create_service_app
from shop.common.auth import KeySet, SigningKeys, TokenVerifier, generate_private_key_pem
from shop.common.logging import get_logger
from shop.users import service
from shop.users.api import keys_router, router
from shop.users.settings import UsersSettings

log = get_logger("shop.users")


def _signing_pem(settings: UsersSettings) -> str:
    if settings.jwt_private_key is not None:
        return settings.jwt_private_key.get_secret_value()
    if settings.jwt_private_key_file is not None:
        return settings.jwt_private_key_file.read_text()
    if settings.is_production:
        raise RuntimeError("SHOP_JWT_PRIVATE_KEY (or _FILE) is required in production")
    log.warning("no JWT signing key configured: using an ephemeral one (development only)")
    return generate_private_key_pem()


def create_app(settings: UsersSettings | None = None) -> FastAPI:
    settings = settings or UsersSettings()

    @asynccontextmanager
    async def users_runtime(app: FastAPI) -> AsyncIterator[None]:
        keys = SigningKeys(_signing_pem(settings))
        app.state.signing_keys = keys
        # This service verifies with its own keys; the others fetch them from the JWKS.
        app.state.verifier = TokenVerifier(
            KeySet(keys.jwks()),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            service_secret=settings.service_token_secret.get_secret_value(),
        )
        app.state.passwords = service.Passwords(settings)
        try:
            if await service.ensure_admin(
                db=app.state.db, passwords=app.state.passwords, settings=settings
            ):
                log.info("bootstrap admin created", username=settings.admin_username)
        except (OSError, asyncpg.PostgresError):
            log.warning("bootstrap admin not ensured: database unreachable")
        yield

    return create_service_app(
        settings,
        title="shop user service",
        description="Registration, login and user records. Issues the platform's JWTs.",
        routers=[router, keys_router],
        extensions=[users_runtime],
    )
