"""Abuse limits of the public endpoints: logins and registrations per client and per account.

Limits key on what the client sends (the login name as typed, lower-cased), never on whether
that account exists, so a 429 tells nothing a 401 would not. Failed logins count against the
account; every attempt counts against the client address.
"""

from __future__ import annotations

import math

from shop.common.errors import RateLimited
from shop.common.ratelimit import Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from shop.users.settings import UsersSettings


def _retry(seconds: float) -> RateLimited:
    return RateLimited(
        "Too many attempts; try again later.", retry_after=max(1, math.ceil(seconds))
    )


class AuthLimits:
    """The user service's limits; every method is a no-op when limiting is off."""

    def __init__(self, settings: UsersSettings, limiter: RateLimiter | None = None) -> None:
        self.enabled = settings.rate_limits_on
        if limiter is None:
            redis_url = settings.redis_url
            limiter = RedisRateLimiter.from_url(redis_url) if redis_url else MemoryRateLimiter()
        self.limiter = limiter
        self.login_ip = Limit(settings.login_ip_limit, settings.login_ip_window_seconds)
        self.login_account = Limit(
            settings.login_account_limit, settings.login_account_window_seconds
        )
        self.register_ip = Limit(settings.register_ip_limit, settings.register_ip_window_seconds)
        self.register_account = Limit(
            settings.register_account_limit, settings.register_account_window_seconds
        )

    async def aclose(self) -> None:
        if isinstance(self.limiter, RedisRateLimiter):
            await self.limiter.aclose()

    async def before_login(self, *, client: str, login: str) -> None:
        if not self.enabled:
            return
        if wait := await self.limiter.hit(f"login:ip:{client}", self.login_ip):
            raise _retry(wait)
        if wait := await self.limiter.check(f"login:account:{login.lower()}", self.login_account):
            raise _retry(wait)

    async def login_failed(self, *, login: str) -> None:
        if self.enabled:
            await self.limiter.hit(f"login:account:{login.lower()}", self.login_account)

    async def login_succeeded(self, *, login: str) -> None:
        if self.enabled:
            await self.limiter.reset(f"login:account:{login.lower()}")

    async def before_register(self, *, client: str, username: str, email: str) -> None:
        if not self.enabled:
            return
        if wait := await self.limiter.hit(f"register:ip:{client}", self.register_ip):
            raise _retry(wait)
        for key in (f"register:user:{username.lower()}", f"register:email:{email.lower()}"):
            if wait := await self.limiter.hit(key, self.register_account):
                raise _retry(wait)
