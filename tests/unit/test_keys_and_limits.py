"""Key rings, JWKS refresh, secret sources and rate limits, with fakes of the project's own
interfaces (MemorySecretSource, a fake JWKS fetch; one JWKS endpoint on loopback): no clock
waits."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shop.common.auth import (
    KeySet,
    KeysUnavailable,
    SigningKeys,
    TokenVerifier,
    generate_private_key_pem,
    issue_access_token,
)
from shop.common.ratelimit import Limit, MemoryRateLimiter
from shop.common.secrets import (
    EnvSecretSource,
    MemorySecretSource,
    ReadOnlySecrets,
    Secret,
    VersionConflict,
)
from shop.common.settings import ServiceSettings
from shop.users.keys import CURRENT, KeyRingMissing, KeyStore
from shop.users.settings import UsersSettings

# --- key ring --------------------------------------------------------------------------------


async def test_a_rotation_promotes_the_published_next_key() -> None:
    store = KeyStore(MemorySecretSource())
    with pytest.raises(KeyRingMissing):
        await store.load()
    ring = await store.initialise(now=1000)
    first = ring.signing_keys(now=1000)
    published = {k["kid"] for k in first.jwks()["keys"]}
    assert len(published) == 2  # current and next

    rotated = await store.rotate(keep_previous=600, now=2000)
    keys = rotated.signing_keys(now=2000)
    assert keys.kid in published  # the new signer was published one rotation ahead
    assert first.kid in {k["kid"] for k in keys.jwks()["keys"]}  # the old one still verifies
    assert all("d" not in jwk for jwk in keys.jwks()["keys"])  # public keys only
    # once every token of the retired key has expired, it is no longer published
    later = rotated.signing_keys(now=2000 + 601)
    assert first.kid not in {k["kid"] for k in later.jwks()["keys"]}


async def test_concurrent_rotations_do_not_overwrite_each_other() -> None:
    source = MemorySecretSource()
    a = KeyStore(source)
    await a.initialise(now=0)
    seen_by_b = source.read("users")
    winner = await a.rotate(keep_previous=60, now=10)
    with pytest.raises(VersionConflict):  # b's write, based on what it read before
        source.write("users", seen_by_b.values, cas=seen_by_b.version)
    # and KeyStore.rotate turns that conflict into adopting the winner's ring
    b = KeyStore(StaleOnce(source, seen_by_b))
    loser = await b.rotate(keep_previous=60, now=11)
    assert loser.current_pem == winner.current_pem
    assert source.read("users").version == 2


class StaleOnce(MemorySecretSource):
    """A view of ``inner`` whose first read is stale (another replica wrote since)."""

    def __init__(self, inner: MemorySecretSource, stale: Secret) -> None:
        super().__init__(inner.data)
        self._stale: Secret | None = stale

    def read(self, path: str) -> Secret:
        stale, self._stale = self._stale, None
        return stale or super().read(path)


async def test_rotation_keeps_the_other_values_at_the_path() -> None:
    source = MemorySecretSource()
    source.write("users", {"SHOP_ADMIN_PASSWORD": "kept"}, cas=0)
    store = KeyStore(source)
    await store.initialise()
    await store.rotate(keep_previous=60)
    values = source.read("users").values
    assert values["SHOP_ADMIN_PASSWORD"] == "kept"
    assert values[CURRENT].startswith("-----BEGIN PRIVATE KEY-----")


# --- JWKS refresh ----------------------------------------------------------------------------


class FakeUsers:
    """The user service's JWKS endpoint, counting fetches (``KeySet``'s ``fetch``)."""

    def __init__(self, *keys: SigningKeys) -> None:
        self.jwks = {"keys": [k.current_jwk for k in keys]}
        self.fetches = 0

    async def fetch(self, url: str) -> dict[str, Any]:
        assert url == "http://users/.well-known/jwks.json"
        self.fetches += 1
        return self.jwks


def _keyset(users: FakeUsers, **kw: float) -> KeySet:
    return KeySet(url="http://users/.well-known/jwks.json", fetch=users.fetch, **kw)


async def test_an_unknown_kid_fetches_the_jwks_again() -> None:
    old, new = SigningKeys(generate_private_key_pem()), SigningKeys(generate_private_key_pem())
    users = FakeUsers(old)
    keys = _keyset(users, min_refresh_interval=0)
    assert await keys.get(old.kid) is not None
    users.jwks["keys"].append(new.current_jwk)  # a rotation published a key
    assert await keys.get(new.kid) is not None
    assert users.fetches == 2


async def test_made_up_kids_cost_at_most_one_fetch_per_interval() -> None:
    key = SigningKeys(generate_private_key_pem())
    users = FakeUsers(key)
    keys = _keyset(users, min_refresh_interval=3600)
    assert await keys.get(key.kid) is not None
    for i in range(3):
        # the interval has not passed: the request waits for it; do not wait an hour here
        keys._fetch_started = float("inf")  # a fetch "after" these requests already ran
        assert await keys.get(f"made-up-{i}") is None
    assert users.fetches == 1


async def test_a_stale_jwks_is_refreshed_in_the_background() -> None:
    key = SigningKeys(generate_private_key_pem())
    users = FakeUsers(key)
    keys = _keyset(users, max_age=0.0, min_refresh_interval=0)
    assert await keys.get(key.kid) is not None
    assert await keys.get(key.kid) is not None  # known, but stale: refresh behind
    assert keys._background is not None
    await keys._background
    assert users.fetches == 2


class FlakyUsers(FakeUsers):
    """The user service's JWKS, unreachable for the first ``down`` fetches (starting up)."""

    def __init__(self, keys: SigningKeys, down: int) -> None:
        super().__init__(keys)
        self.down = down

    async def fetch(self, url: str) -> dict[str, Any]:
        if self.fetches < self.down:
            self.fetches += 1
            raise ConnectionRefusedError("users is starting")
        return await super().fetch(url)


async def test_the_set_is_ready_only_once_the_jwks_has_arrived() -> None:
    """A service's readiness check reads ``ready``: false until a fetch succeeded, which
    ``kept_fresh`` (the lifespan) retries on its own, before any token needs it."""
    key = SigningKeys(generate_private_key_pem())
    users = FlakyUsers(key, down=3)
    keys = _keyset(users)  # the default 2 s throttle does not slow the start-up retries
    assert not keys.ready
    async with keys.kept_fresh(retry_every=0.01):
        async with asyncio.timeout(10):
            while not keys.ready:  # noqa: ASYNC110 (polling the flag readiness reads)
                await asyncio.sleep(0.01)
        assert users.fetches == 4  # three refused, one served
        assert keys.kids == {key.kid}
    assert KeySet({"keys": []}).ready  # static keys: nothing to fetch


async def test_a_token_whose_key_cannot_be_fetched_is_a_503_not_a_401() -> None:
    """The key may be good: the client is told to retry (503), and is let in once the JWKS
    answers again, rather than told its valid token was refused."""
    key = SigningKeys(generate_private_key_pem())
    users = FlakyUsers(key, down=1)
    verifier = TokenVerifier(
        _keyset(users, min_refresh_interval=0),
        issuer="shop-users",
        audience="shop",
        service_secret="s" * 32,
    )
    signed = issue_access_token(
        key, user_id=7, role="customer", issuer="shop-users", audience="shop", ttl=60
    )
    with pytest.raises(KeysUnavailable) as refused:
        await verifier.verify(signed)
    assert refused.value.status == 503
    assert refused.value.headers["Retry-After"]
    assert (await verifier.verify(signed)).user_id == 7


class _JwksHandler(BaseHTTPRequestHandler):
    """A real HTTP JWKS endpoint on loopback: 200 with ``document`` once, then ``status``."""

    document: bytes = b""
    statuses: list[int] = []

    def do_GET(self) -> None:
        status = self.statuses.pop(0) if self.statuses else 503
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.document if status == 200 else b'{"detail": "down"}')

    def log_message(self, *args: Any) -> None:
        pass


async def test_a_failed_refresh_keeps_the_known_keys() -> None:
    """Over real HTTP (the default fetch, the standard library's client): a 503 or a dropped
    connection after the first fetch leaves the keys it fetched in use."""
    key = SigningKeys(generate_private_key_pem())
    _JwksHandler.document = json.dumps({"keys": [key.current_jwk]}).encode()
    _JwksHandler.statuses = [200, 503]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        keys = KeySet(url=url, min_refresh_interval=0)
        assert await keys.get(key.kid) is not None
        with pytest.raises(KeysUnavailable):  # the refresh got a 503: unknown, not refused
            await keys.get("unknown")
        assert await keys.get(key.kid) is not None
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(KeysUnavailable):  # nobody listening: connection refused
        await keys.get("unknown-too")
    assert await keys.get(key.kid) is not None
    assert keys.fetches == 3


# --- secret sources and settings -------------------------------------------------------------


def test_without_vault_settings_come_from_env_and_files(tmp_path, monkeypatch) -> None:
    (tmp_path / "SHOP_SERVICE_TOKEN_SECRET").write_text("from-a-file-" + "x" * 30)
    monkeypatch.setenv("SHOP_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("SHOP_VAULT_ADDR", raising=False)
    source = EnvSecretSource(
        environ={"SHOP_JWT_ISSUER": "me", "PATH": "/bin"}, secrets_dir=tmp_path
    )
    assert source.read("anything").values == {
        "SHOP_SERVICE_TOKEN_SECRET": "from-a-file-" + "x" * 30,
        "SHOP_JWT_ISSUER": "me",
    }
    with pytest.raises(ReadOnlySecrets):
        source.write("users", {}, cas=1)
    settings = ServiceSettings(_secrets_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.service_token_secret.get_secret_value().startswith("from-a-file-")
    assert settings.vault_addr is None


def test_production_refuses_plain_http_vault() -> None:
    strong = "s" * 40
    with pytest.raises(ValueError, match="https"):
        ServiceSettings(
            env="production",
            service_token_secret=strong,
            vault_addr="http://vault.vault.svc:8200",
            _secrets_dir=None,  # type: ignore[call-arg]
        )


def test_rotation_must_be_slower_than_reload() -> None:
    with pytest.raises(ValueError, match="rotation"):
        UsersSettings(jwt_keys_reload_seconds=60, jwt_rotation_interval_seconds=90)


def test_rate_limits_are_on_except_in_tests() -> None:
    assert UsersSettings(env="development").rate_limits_on
    assert not UsersSettings(env="test").rate_limits_on
    assert UsersSettings(env="test", rate_limiting=True).rate_limits_on


# --- rate limiter ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_limiter_allows_a_burst_then_spaces_hits() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    limit = Limit(3, 60)
    assert [await limiter.hit("k", limit) for _ in range(3)] == [0, 0, 0]
    wait = await limiter.hit("k", limit)
    assert wait == pytest.approx(20)  # one more every 60 / 3 seconds
    assert await limiter.hit("other", limit) == 0  # keys are independent
    clock.now = 20
    assert await limiter.check("k", limit) == 0
    assert await limiter.hit("k", limit) == 0
    assert await limiter.hit("k", limit) > 0
    await limiter.reset("k")
    assert await limiter.hit("k", limit) == 0


async def test_the_limiter_memory_is_bounded() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(max_keys=10, clock=clock)
    for i in range(100):
        await limiter.hit(f"ip-{i}", Limit(5, 60))
    assert len(limiter._tat) <= 10
