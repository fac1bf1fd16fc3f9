from __future__ import annotations

from decimal import Decimal

from pydantic import Field, SecretStr

from shop.common.settings import PlanCacheMode, ServiceSettings


class PaymentsSettings(ServiceSettings):
    service_name: str = "payment-service"
    port: int = 5003
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/paymentdb")
    jwks_url: str | None = "http://127.0.0.1:5000/.well-known/jwks.json"
    # Every statement here is a keyed look-up, a write or a page of one customer's rows, whose
    # one generic plan fits every argument: planned once per connection, not per execution
    # (docs/performance.md, "Issue 31, sixth round").
    db_plan_cache_mode: PlanCacheMode = "force_generic_plan"
    # The built-in provider declines any amount above this, so demos and tests can see a decline.
    decline_above: Decimal = Field(default=Decimal("10000.00"), gt=0)
    # How long a charge may stay `processing` (the provider being asked) before another call
    # may settle it: longer than the provider's own timeout.
    processing_lease_seconds: float = Field(default=30.0, gt=0)
