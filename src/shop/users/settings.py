from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from shop.common.settings import ServiceSettings


class UsersSettings(ServiceSettings):
    service_name: str = "user-service"
    port: int = 5000
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/userdb")

    jwt_private_key: SecretStr | None = None
    jwt_private_key_file: Path | None = None
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86400)

    admin_username: str = "admin"
    admin_email: str = "admin@shop.local"
    admin_password: SecretStr | None = None

    # argon2id cost; the defaults are argon2-cffi's (RFC 9106 low-memory profile).
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
