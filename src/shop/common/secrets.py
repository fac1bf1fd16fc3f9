"""Where secrets come from: one interface, Vault (KV v2) when configured, else env and files.

A secret lives at a path (``internal``, ``users``) and is a set of named values, named like the
environment variables they replace (``SHOP_SERVICE_TOKEN_SECRET``)::

    SecretSource                 read(path) -> Secret; write(path, values, cas=)
    ├── VaultSecretSource        Vault/OpenBao KV v2 under ``secret/shop/<path>`` (hvac)
    ├── EnvSecretSource          the process environment and SHOP_SECRETS_DIR files (read-only)
    └── MemorySecretSource       a dict with versions (tests, ephemeral development)

Settings read the same values through ``VaultSettingsSource``, a pydantic-settings source that
sits between the environment and the secret files when ``SHOP_VAULT_ADDR`` is set; without it
nothing changes (``make run`` keeps its env and files).
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from shop.common.vault import SecretNotFound, Vault, VaultConfig, VaultError, VersionConflict

ENV_PREFIX = "SHOP_"

__all__ = [
    "EnvSecretSource",
    "MemorySecretSource",
    "ReadOnlySecrets",
    "Secret",
    "SecretNotFound",
    "SecretSource",
    "VaultError",
    "VaultSecretSource",
    "VaultSettingsSource",
    "VersionConflict",
]


class ReadOnlySecrets(VaultError):
    """This source cannot store secrets (rotation needs Vault)."""


@dataclass(frozen=True, slots=True)
class Secret:
    values: dict[str, str]
    version: int  # 0: nothing stored yet


class SecretSource(ABC):
    """Named secrets by path; writes are check-and-set so concurrent rotations cannot clash."""

    @abstractmethod
    def read(self, path: str) -> Secret:
        """The latest values at ``path`` (``version`` 0 and no values when there are none)."""

    @abstractmethod
    def write(self, path: str, values: dict[str, str], *, cas: int) -> int:
        """Store ``values`` if the latest version is still ``cas``; returns the new version.
        Raises ``VersionConflict`` when another writer came first."""

    async def aread(self, path: str) -> Secret:
        return await asyncio.to_thread(self.read, path)

    async def awrite(self, path: str, values: dict[str, str], *, cas: int) -> int:
        return await asyncio.to_thread(self.write, path, values, cas=cas)


class VaultSecretSource(SecretSource):
    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def read(self, path: str) -> Secret:
        try:
            values, version = self.vault.kv_read(path)
        except SecretNotFound:
            return Secret({}, 0)
        return Secret(values, version)

    def write(self, path: str, values: dict[str, str], *, cas: int) -> int:
        return self.vault.kv_write(path, values, cas=cas)


class EnvSecretSource(SecretSource):
    """The environment and the secret files: one flat namespace, so ``path`` is not used."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, secrets_dir: Path | None = None
    ) -> None:
        self._environ = os.environ if environ is None else environ
        folder = secrets_dir or self._environ.get("SHOP_SECRETS_DIR")
        self._dir = Path(folder) if folder else None

    def read(self, path: str) -> Secret:
        values: dict[str, str] = {}
        if self._dir is not None and self._dir.is_dir():
            for file in self._dir.iterdir():
                if file.name.startswith(ENV_PREFIX) and file.is_file():
                    values[file.name] = file.read_text().strip()
        values.update({k: v for k, v in self._environ.items() if k.startswith(ENV_PREFIX)})
        return Secret(values, 1 if values else 0)

    def write(self, path: str, values: dict[str, str], *, cas: int) -> int:
        raise ReadOnlySecrets("environment variables and files cannot be rotated: use Vault")


@dataclass
class MemorySecretSource(SecretSource):
    """In-process secrets with KV v2's versions and check-and-set."""

    data: dict[str, Secret] = field(default_factory=dict)

    def read(self, path: str) -> Secret:
        return self.data.get(path, Secret({}, 0))

    def write(self, path: str, values: dict[str, str], *, cas: int) -> int:
        current = self.read(path).version
        if current != cas:
            raise VersionConflict(f"{path}: version is {current}, not {cas}")
        self.data[path] = Secret(dict(values), current + 1)
        return current + 1


class VaultSettingsSource(PydanticBaseSettingsSource):
    """Fill settings from Vault's KV paths named by the settings class (``vault_kv_paths``).

    Vault is configured by the sources before this one (init arguments, environment). A key
    ``SHOP_SERVICE_TOKEN_SECRET`` fills the field ``service_token_secret``.
    """

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        config = VaultConfig.from_fields(dict(self.current_state))
        if config is None:
            return {}
        if str(self.current_state.get("env")) == "production" and not trusted_vault_addr(
            config.addr
        ):  # refuse before a credential travels in the clear
            raise ValueError("Vault must be reached over https (or a local agent on loopback)")
        role = str(self.current_state.get("service_name") or _default(self.settings_cls))
        vault = Vault.connect(config, default_role=role)
        try:
            source = VaultSecretSource(vault)
            values: dict[str, Any] = {}
            for path in getattr(self.settings_cls, "vault_kv_paths", ()):
                for key, value in source.read(path).values.items():
                    name = key.removeprefix(ENV_PREFIX).lower()
                    if key.startswith(ENV_PREFIX) and name in self.settings_cls.model_fields:
                        values[name] = value
            return values
        finally:
            vault.close()


def _default(settings_cls: type[BaseSettings]) -> str:
    return str(settings_cls.model_fields["service_name"].default)


def trusted_vault_addr(addr: str) -> bool:
    """https, or plain http to a Vault Agent on loopback."""
    parts = urlsplit(addr)
    return parts.scheme == "https" or parts.hostname in ("127.0.0.1", "localhost", "::1")
