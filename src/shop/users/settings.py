from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator

from shop.common.settings import Environment, ServiceSettings


class UsersSettings(ServiceSettings):
    service_name: str = "user-service"
    port: int = 5000
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/userdb")
    # With Vault: the shared internal secret, and this service's keys and admin password.
    vault_kv_paths: ClassVar[tuple[str, ...]] = ("internal", "users")

    jwt_private_key: SecretStr | None = None
    jwt_private_key_file: Path | None = None
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86400)
    refresh_token_ttl_seconds: int = Field(default=14 * 86400, ge=60)
    # Signing keys in Vault: reloaded this often (a rotation by another replica or by
    # `shop rotate-keys` is picked up), rotated when the current key is this old.
    jwt_keys_reload_seconds: float = Field(default=60.0, gt=0)
    jwt_rotation_interval_seconds: float = Field(default=86400.0, gt=0)

    admin_username: str = "admin"
    admin_email: str = "admin@shop.local"
    admin_password: SecretStr | None = None

    # argon2id cost: OWASP's recommended minimum (m = 19 MiB, t = 2, p = 1), the decision and
    # its figures in docs/security.md. Hashes of another cost are upgraded on the next login.
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19 * 1024, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)

    # Abuse limits (requests per window, per process). None: on, except in the test
    # environment, whose suites log in and register far more often than a person.
    rate_limiting: bool | None = None
    # Shared limits across replicas; unset: each process limits on its own.
    redis_url: str | None = None
    login_ip_limit: int = Field(default=30, ge=1)
    login_ip_window_seconds: float = Field(default=60.0, gt=0)
    login_account_limit: int = Field(default=10, ge=1)  # failed logins per account
    login_account_window_seconds: float = Field(default=900.0, gt=0)
    register_ip_limit: int = Field(default=20, ge=1)
    register_ip_window_seconds: float = Field(default=3600.0, gt=0)
    register_account_limit: int = Field(default=5, ge=1)  # per username and per email
    register_account_window_seconds: float = Field(default=3600.0, gt=0)

    @property
    def rate_limits_on(self) -> bool:
        if self.rate_limiting is None:
            return self.env is not Environment.TEST
        return self.rate_limiting

    @property
    def keep_previous_key_seconds(self) -> float:
        """How long a retired key stays published: until every token it signed has expired,
        counting replicas that sign with it until their next reload, plus clock leeway."""
        return self.access_token_ttl_seconds + 2 * self.jwt_keys_reload_seconds + 60

    @model_validator(mode="after")
    def _rotation_slower_than_reload(self) -> Self:
        if self.jwt_rotation_interval_seconds < 2 * self.jwt_keys_reload_seconds:
            raise ValueError("jwt_rotation_interval_seconds must be >= 2 x jwt_keys_reload_seconds")
        return self
