from __future__ import annotations

from decimal import Decimal

from pydantic import Field, SecretStr

from shop.common.settings import ServiceSettings


class PaymentsSettings(ServiceSettings):
    service_name: str = "payment-service"
    port: int = 5003
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/paymentdb")
    jwks_url: str | None = "http://127.0.0.1:5000/.well-known/jwks.json"
    # The built-in provider declines any amount above this, so demos and tests can see a decline.
    decline_above: Decimal = Field(default=Decimal("10000.00"), gt=0)
