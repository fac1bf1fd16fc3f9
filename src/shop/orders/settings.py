from __future__ import annotations

from pydantic import Field, SecretStr

from shop.common.settings import PlanCacheMode, ServiceSettings


class OrdersSettings(ServiceSettings):
    service_name: str = "order-service"
    port: int = 5002
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/orderdb")
    jwks_url: str | None = "http://127.0.0.1:5000/.well-known/jwks.json"
    products_url: str = "http://127.0.0.1:5001"
    payments_url: str = "http://127.0.0.1:5003"
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    # Every statement here is a keyed look-up, a write or a page of one customer's rows, whose
    # one generic plan fits every argument: planned once per connection, not per execution
    # (docs/performance.md, "Issue 31, sixth round").
    db_plan_cache_mode: PlanCacheMode = "force_generic_plan"

    # A saga driver holds an order's lease while it works on it; recovery takes expired ones.
    saga_lease_seconds: float = Field(default=30.0, gt=0)
    recovery_interval_seconds: float = Field(default=5.0, gt=0)
    recovery_enabled: bool = True
    retry_deadline_seconds: float = Field(default=8.0, gt=0)
    # Bulkhead: sagas running at once per process; more wait for a slot, then get 503.
    saga_max_in_flight: int = Field(default=32, ge=1)
    saga_queue_timeout_seconds: float = Field(default=5.0, gt=0)
