"""Rate limits shared by every replica through a real Redis (`SHOP_REDIS_URL`).

The test starts its own redis-server (Debian's, installed by `make tools`) on a free port
(``shop.devtools.redis.RedisServer``), so it neither needs nor touches a Redis the machine may
run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from shop.common.errors import RateLimited
from shop.common.ratelimit import Limit, RedisRateLimiter
from shop.common.settings import Environment
from shop.devtools.redis import RedisServer
from shop.users.limits import AuthLimits
from shop.users.settings import UsersSettings

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_two_replicas_share_one_budget_per_key(redis_server: RedisServer) -> None:
    a, b = RedisRateLimiter.from_url(redis_server.url), RedisRateLimiter.from_url(redis_server.url)
    limit = Limit(3, 60)
    try:
        assert [await a.hit("k", limit), await b.hit("k", limit), await a.hit("k", limit)] == [
            0
        ] * 3
        assert await b.hit("k", limit) > 0  # the fourth, wherever it lands, waits
        assert 0 < await a.check("k", limit) <= 20  # one hit per 20 s comes back
        assert await a.hit("other", limit) == 0  # keys are independent
        await b.reset("k")
        assert await a.hit("k", limit) == 0
    finally:
        await a.aclose()
        await b.aclose()


async def test_check_does_not_count(redis_server: RedisServer) -> None:
    limiter = RedisRateLimiter.from_url(redis_server.url)
    limit = Limit(1, 60)
    try:
        for _ in range(5):
            assert await limiter.check("k", limit) == 0
        assert await limiter.hit("k", limit) == 0
        assert await limiter.hit("k", limit) > 0
    finally:
        await limiter.aclose()


async def test_without_redis_each_process_still_limits(redis_server: RedisServer) -> None:
    limiter = RedisRateLimiter.from_url(redis_server.url)
    redis_server.stop()
    limit = Limit(2, 60)
    try:
        assert [await limiter.hit("k", limit) for _ in range(2)] == [0, 0]  # no error
        assert await limiter.hit("k", limit) > 0  # the in-memory fallback still counts
    finally:
        await limiter.aclose()


async def test_the_user_service_limits_logins_across_replicas(redis_server: RedisServer) -> None:
    settings = UsersSettings(
        env=Environment.TEST,
        rate_limiting=True,
        redis_url=redis_server.url,
        login_ip_limit=4,
        admin_password="a-test-admin-password",
    )
    replicas = [AuthLimits(settings), AuthLimits(settings)]
    try:
        for i in range(4):  # alternate replicas, as a load balancer would
            await replicas[i % 2].before_login(client="203.0.113.7", login=f"user{i}")
        for replica in replicas:
            with pytest.raises(RateLimited) as refused:
                await replica.before_login(client="203.0.113.7", login="someone")
            assert int(refused.value.headers["Retry-After"]) >= 1
        await replicas[0].before_login(client="198.51.100.1", login="other")  # another client
    finally:
        for replica in replicas:
            await replica.aclose()
