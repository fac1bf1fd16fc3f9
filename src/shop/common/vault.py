"""A Vault (or OpenBao) client for the services: login, KV v2, dynamic database credentials.

A thin layer over ``hvac`` (synchronous: async code calls it through ``asyncio.to_thread``),
imported when a client is made: a service without Vault never loads hvac and requests (about
6 MB of RSS; docs/performance.md, "Memory").
Login is token auth for development, Kubernetes or AppRole auth for production; tokens from a
login are renewed, and the client logs in again when its token is about to expire::

    VaultError                   anything Vault refused or could not answer
    ├── VersionConflict          a check-and-set write lost against another writer
    └── SecretNotFound           nothing stored at that path
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    import hvac

AuthMethod = Literal["token", "kubernetes", "approle"]
# Log in again when the token has less than this left (seconds).
RELOGIN_MARGIN = 60.0


class VaultError(Exception):
    """Vault refused the request or could not be reached."""


class VersionConflict(VaultError):
    """A check-and-set write found a newer version than the one it was based on."""


class SecretNotFound(VaultError):
    """Nothing is stored at the path."""


class VaultConfig(BaseModel):
    """How to reach and log in to Vault (the settings' ``vault_*`` fields, without the prefix)."""

    addr: str
    auth: AuthMethod = "token"
    token: SecretStr | None = None
    role: str | None = None
    auth_mount: str | None = None
    kubernetes_token_file: Path = Path("/var/run/secrets/vault/token")
    approle_role_id: str | None = None
    approle_secret_id: SecretStr | None = None
    kv_mount: str = "secret"
    kv_prefix: str = "shop"
    database_mount: str = "database"
    ca_cert: Path | None = None
    timeout_seconds: float = 5.0

    @classmethod
    def from_fields(cls, fields: Mapping[str, object]) -> VaultConfig | None:
        """From ``vault_*`` settings values (validated or raw); None when no address is set."""
        values = {
            name.removeprefix("vault_"): value
            for name, value in fields.items()
            if name.startswith("vault_") and value is not None
        }
        return cls.model_validate(values) if values.get("addr") else None


@dataclass(frozen=True, slots=True)
class Lease:
    """Dynamic credentials and the lease that keeps them alive."""

    lease_id: str
    username: str
    password: str
    duration: float
    renewable: bool


def _errors(exc: Exception) -> VaultError:
    import hvac.exceptions

    if isinstance(exc, hvac.exceptions.InvalidPath):
        return SecretNotFound(str(exc))
    if isinstance(exc, hvac.exceptions.InvalidRequest) and "check-and-set" in str(exc):
        return VersionConflict(str(exc))
    return VaultError(f"{type(exc).__name__}: {exc}")


class Vault:
    """A logged-in client. ``role`` defaults to the service's name (the Kubernetes SA's)."""

    def __init__(self, config: VaultConfig, *, default_role: str) -> None:
        import hvac
        import hvac.exceptions
        import requests

        self.config = config
        self._role = config.role or default_role
        # What a call to Vault raises when Vault refused it or could not be reached.
        self._failures: tuple[type[Exception], ...] = (
            hvac.exceptions.VaultError,
            requests.RequestException,
            OSError,
        )
        self._client: hvac.Client = hvac.Client(
            url=config.addr,
            token=config.token.get_secret_value() if config.token else None,
            verify=str(config.ca_cert) if config.ca_cert else True,
            timeout=int(max(1, config.timeout_seconds)),
        )
        self._token_expires = float("inf")  # token auth: the operator's token, not renewed here

    @classmethod
    def connect(cls, config: VaultConfig, *, default_role: str) -> Vault:
        vault = cls(config, default_role=default_role)
        vault.login()
        return vault

    # --- login ---------------------------------------------------------------------------

    def login(self) -> None:
        """Log in with the configured method (token auth only checks the token works)."""
        config = self.config
        mount = config.auth_mount or config.auth
        try:
            if config.auth == "kubernetes":
                jwt = config.kubernetes_token_file.read_text().strip()
                result = self._client.auth.kubernetes.login(self._role, jwt, mount_point=mount)
            elif config.auth == "approle":
                if not config.approle_role_id or config.approle_secret_id is None:
                    raise VaultError("AppRole auth needs a role id and a secret id")
                result = self._client.auth.approle.login(
                    config.approle_role_id,
                    config.approle_secret_id.get_secret_value(),
                    mount_point=mount,
                )
            else:
                self._client.auth.token.lookup_self()
                return
        except self._failures as exc:
            raise _errors(exc) from None
        ttl = float(result["auth"].get("lease_duration") or 0)
        self._token_expires = time.monotonic() + ttl if ttl else float("inf")

    def ensure_token(self) -> None:
        """Log in again when a login token is close to expiring."""
        if time.monotonic() > self._token_expires - RELOGIN_MARGIN:
            self.login()

    # --- KV v2 ---------------------------------------------------------------------------

    def _kv_path(self, path: str) -> str:
        return f"{self.config.kv_prefix}/{path}".strip("/")

    def kv_read(self, path: str) -> tuple[dict[str, str], int]:
        """The latest version of a KV v2 secret under the prefix, and its version number."""
        self.ensure_token()
        try:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=self._kv_path(path),
                mount_point=self.config.kv_mount,
                raise_on_deleted_version=True,
            )
        except self._failures as exc:
            raise _errors(exc) from None
        data = response["data"]
        values = {str(k): str(v) for k, v in (data.get("data") or {}).items()}
        return values, int(data["metadata"]["version"])

    def kv_write(self, path: str, values: dict[str, str], *, cas: int | None = None) -> int:
        """Write a new version; with ``cas``, only if the latest version is still ``cas``
        (0: only if nothing is stored yet). Returns the new version."""
        self.ensure_token()
        try:
            response = self._client.secrets.kv.v2.create_or_update_secret(
                path=self._kv_path(path),
                secret=values,
                cas=cas,
                mount_point=self.config.kv_mount,
            )
        except self._failures as exc:
            raise _errors(exc) from None
        return int(response["data"]["version"])

    # --- dynamic database credentials ----------------------------------------------------

    def database_credentials(self, role: str) -> Lease:
        self.ensure_token()
        try:
            response = self._client.secrets.database.generate_credentials(  # type: ignore[no-untyped-call]
                role, mount_point=self.config.database_mount
            )
        except self._failures as exc:
            raise _errors(exc) from None
        return Lease(
            lease_id=response["lease_id"],
            username=response["data"]["username"],
            password=response["data"]["password"],
            duration=float(response["lease_duration"]),
            renewable=bool(response["renewable"]),
        )

    def renew_lease(self, lease_id: str, increment: int) -> float:
        """Extend a lease; returns the seconds it now has (less than asked near its max TTL)."""
        self.ensure_token()
        try:
            response = self._client.sys.renew_lease(  # type: ignore[no-untyped-call]
                lease_id=lease_id, increment=increment
            )
        except self._failures as exc:
            raise _errors(exc) from None
        return float(response["lease_duration"])

    def revoke_lease(self, lease_id: str) -> None:
        self.ensure_token()
        try:
            self._client.sys.revoke_lease(lease_id=lease_id)  # type: ignore[no-untyped-call]
        except self._failures as exc:
            raise _errors(exc) from None

    def close(self) -> None:
        adapter = self._client.adapter
        if adapter is not None:
            adapter.close()
