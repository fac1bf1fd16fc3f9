from __future__ import annotations

from pydantic import SecretStr

from shop.common.settings import ServiceSettings


class ProductsSettings(ServiceSettings):
    service_name: str = "product-service"
    port: int = 5001
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/productdb")
    jwks_url: str | None = "http://127.0.0.1:5000/.well-known/jwks.json"
