"""Settings: one pydantic-settings class per service, all on this shared base.

Values come from the environment (prefix ``SHOP_``), then from Vault when ``SHOP_VAULT_ADDR`` is
set (KV v2 paths named by ``vault_kv_paths``, see ``shop.common.secrets``), then from secret files
in ``SHOP_SECRETS_DIR`` (one file per variable, as Vault Agent or Kubernetes render them).
Outside development and test, placeholder secrets are refused at start-up.
"""

from __future__ import annotations

import os
import socket
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shop.common.secrets import VaultSettingsSource, trusted_vault_addr

# Placeholders that ship in examples and docs; refused outside development/test.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev-secret", "password"})
DEV_SERVICE_TOKEN_SECRET = "dev-only-service-token-secret-not-for-production"  # noqa: S105

# PostgreSQL's plan_cache_mode values (ServiceSettings.db_plan_cache_mode).
PlanCacheMode = Literal["auto", "force_generic_plan", "force_custom_plan"]


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def _default_pod_name() -> str:
    return os.environ.get("HOSTNAME") or socket.gethostname()


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses add their own and set ``service_name``/``port``."""

    model_config = SettingsConfigDict(
        env_prefix="SHOP_",
        env_file=None,
        extra="ignore",
        secrets_dir=os.environ.get("SHOP_SECRETS_DIR") or None,
    )

    service_name: str = "shop"
    env: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    db_pool_min: int = Field(default=2, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    db_command_timeout: float = Field(default=5.0, gt=0)
    # PostgreSQL's plan_cache_mode for the service's pool: "auto" lets it plan a prepared
    # statement anew per execution while it judges a custom plan cheaper; a service whose
    # statements are all keyed look-ups and writes (one plan fits every argument) sets
    # "force_generic_plan" and plans each statement once per connection.
    db_plan_cache_mode: PlanCacheMode = "auto"

    log_level: str = "INFO"
    log_json: bool = True
    pod_name: str = Field(default_factory=_default_pod_name)
    # Tracing (shop.common.tracing): an OTLP/HTTP collector's base URL; unset = tracing off
    # unless the standard OTEL_EXPORTER_OTLP_ENDPOINT is set.
    otlp_endpoint: str | None = None
    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1)

    # Auth shared by all services: user tokens are EdDSA JWTs from the user service,
    # verified with its public keys (JWKS); service tokens are HS256 with an internal key.
    jwt_issuer: str = "shop-users"
    jwt_audience: str = "shop"
    jwks_url: str | None = None
    jwt_public_keys_file: Path | None = None
    service_token_secret: SecretStr = SecretStr(DEV_SERVICE_TOKEN_SECRET)
    service_token_ttl_seconds: int = 300
    # A fetched JWKS is refreshed in the background when older than this, and at once (at
    # most every jwks_min_refresh_seconds) when a token names an unknown key id.
    jwks_max_age_seconds: float = Field(default=300.0, gt=0)
    jwks_min_refresh_seconds: float = Field(default=2.0, ge=0)

    # Vault / OpenBao (optional). Without vault_addr, secrets come from the environment and
    # SHOP_SECRETS_DIR only; with it, from KV v2 (and database credentials, when a role is set).
    vault_kv_paths: ClassVar[tuple[str, ...]] = ("internal",)
    vault_addr: str | None = None
    vault_auth: Literal["token", "kubernetes", "approle"] = "token"
    vault_token: SecretStr | None = None
    vault_role: str | None = None  # the login role; default: the service's name
    vault_auth_mount: str | None = None  # default: the method's name
    vault_kubernetes_token_file: Path = Path("/var/run/secrets/vault/token")
    vault_approle_role_id: str | None = None
    vault_approle_secret_id: SecretStr | None = None
    vault_kv_mount: str = "secret"
    vault_kv_prefix: str = "shop"
    vault_ca_cert: Path | None = None
    vault_timeout_seconds: float = Field(default=5.0, gt=0)
    # Dynamic PostgreSQL credentials from Vault's database engine (database/creds/<role>):
    # database_url then gives host, port, database and options; the user and password are
    # Vault's, renewed and rotated while the service runs.
    vault_database_role: str | None = None
    vault_database_mount: str = "database"

    # Events (shop.common.events, docs/events.md): the RabbitMQ URL; unset = no broker, the
    # outbox keeps every event until one is configured. Exchange and queue names are
    # settings only so that test runs can keep to their own; production uses the defaults.
    amqp_url: SecretStr | None = None
    amqp_exchange: str = "shop.events"
    amqp_queue_prefix: str = "shop."
    amqp_prefetch: int = Field(default=16, ge=1, le=1000)
    event_max_attempts: int = Field(default=5, ge=1)
    event_retry_base_seconds: float = Field(default=1.0, gt=0)
    # The longest wait between two attempts (the backoff doubles up to it); unset: no cap.
    event_retry_cap_seconds: float | None = Field(default=None, gt=0)
    relay_poll_seconds: float = Field(default=0.2, gt=0)
    relay_idle_poll_seconds: float = Field(default=1.0, gt=0)  # the wait grows to it while idle
    relay_batch: int = Field(default=200, ge=1)
    # Where the relay runs (docs/events.md, "The relay process"): by default in its own process
    # (`shop relay SERVICE`, the Deployments' `relay` sidecar), so request-serving processes pay
    # only the outbox INSERT; true: inside the service process too, as a lifespan extension
    # (embedded use and in-process tests). relay_port: the relay process's /metrics.
    relay_in_process: bool = False
    relay_port: int = Field(default=9464, ge=1, le=65535)
    outbox_retention_hours: float = Field(default=24.0, ge=0)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    http_timeout_seconds: float = Field(default=5.0, gt=0)
    # Testing aid for fault injection (issue: crash/timeout proofs); refused in production.
    fault_injection: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        vault = VaultSettingsSource(settings_cls)
        return init_settings, env_settings, dotenv_settings, vault, file_secret_settings

    def vault_fields(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in type(self).model_fields if "vault_" in name}

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    def secret_fields(self) -> dict[str, SecretStr]:
        return {
            name: value
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), SecretStr)
        }

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Self:
        if self.env is not Environment.PRODUCTION:
            return self
        weak = [
            name
            for name, value in self.secret_fields().items()
            if value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS
            or value.get_secret_value() == DEV_SERVICE_TOKEN_SECRET
        ]
        if weak:
            raise ValueError(f"placeholder secrets are not allowed in production: {sorted(weak)}")
        if len(self.service_token_secret.get_secret_value()) < 32:
            raise ValueError("the service token secret must be at least 32 characters")
        if self.fault_injection:
            raise ValueError("fault injection must be off in production")
        if self.vault_addr and not trusted_vault_addr(self.vault_addr):
            raise ValueError("Vault must be reached over https (or a local agent on loopback)")
        return self
