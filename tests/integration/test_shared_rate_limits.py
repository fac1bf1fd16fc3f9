"""Rate limits shared by every replica through a real Redis (`SHOP_REDIS_URL`).

The test starts its own redis-server (Debian's, installed by `make tools`) on a free port, so it
neither needs nor touches a Redis the machine may run.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shop.common.errors import RateLimited
from shop.common.ratelimit import Limit, RedisRateLimiter
from shop.common.settings import Environment
from shop.devtools.processes import stable_ports
from shop.users.limits import AuthLimits
from shop.users.settings import UsersSettings

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)


class RedisServer:
    def __init__(self) -> None:
        self.port = stable_ports([0])
        self.folder = Path(tempfile.mkdtemp(prefix="shop-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


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
