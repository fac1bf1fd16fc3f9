from __future__ import annotations

from pydantic import Field, SecretStr

from shop.common.settings import ServiceSettings

# The near cache's default bounds (shop.products.cache). By bytes, bodies plus the cache's
# ENTRY_OVERHEAD: 28 MiB holds about 39,000 product pages and keeps the product process under
# its 150 MB RSS target (docs/performance.md, "The catalogue at 100,000 products": at 36 MiB
# it peaked at 149 MB in make bench's search scenario). By count, the 100,000-product
# catalogue the platform is sized for, so that the bytes bind first.
NEAR_ENTRIES = 100_000
NEAR_BYTES = 28 * 2**20


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
    # The near cache's bounds (NEAR_ENTRIES and NEAR_BYTES above).
    catalogue_near_entries: int = Field(default=NEAR_ENTRIES, ge=0)
    catalogue_near_max_bytes: int = Field(default=NEAR_BYTES, ge=0)
    # HTTP caching of catalogue reads: clients and proxies may reuse a body this long, then
    # revalidate with If-None-Match (304 when unchanged).
    catalogue_max_age_seconds: int = Field(default=5, ge=0)
