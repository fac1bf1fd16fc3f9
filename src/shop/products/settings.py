from __future__ import annotations

from pydantic import Field, SecretStr

from shop.common.settings import ServiceSettings


class ProductsSettings(ServiceSettings):
    service_name: str = "product-service"
    port: int = 5001
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/productdb")
    jwks_url: str | None = "http://127.0.0.1:5000/.well-known/jwks.json"

    # The catalogue cache (shop.products.cache): on when a Redis is configured. The TTLs are
    # the staleness bound when an invalidation message is lost (docs/performance.md).
    redis_url: str | None = None
    catalogue_cache: bool = True
    catalogue_cache_prefix: str = "shop:catalogue:"
    catalogue_cache_ttl_seconds: float = Field(default=300.0, gt=0)
    catalogue_list_ttl_seconds: float = Field(default=5.0, gt=0)
    catalogue_near_entries: int = Field(default=20_000, ge=0)
    # The near cache's bytes (bodies and their bookkeeping): the whole 10,000-product catalogue
    # and its list pages take about 10 MB (docs/performance.md, "Memory").
    catalogue_near_max_bytes: int = Field(default=32 * 2**20, ge=0)
    # HTTP caching of catalogue reads: clients and proxies may reuse a body this long, then
    # revalidate with If-None-Match (304 when unchanged).
    catalogue_max_age_seconds: int = Field(default=5, ge=0)
