"""The payment-provider interface and the built-in simulated provider.

A provider's ``charge`` and ``refund`` must be idempotent by ``payment_id`` (real providers
take it as their idempotency key): asking again about a payment whose first answer was lost
returns that answer, never a second charge or refund. Recovery of a ``processing`` or
``refunding`` payment relies on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ProviderResult:
    approved: bool
    transaction_id: str | None = None
    reason: str | None = None


class PaymentProvider(Protocol):
    async def charge(
        self, *, payment_id: str, amount: Decimal, currency: str, method: str
    ) -> ProviderResult: ...

    async def refund(
        self, *, payment_id: str, transaction_id: str, amount: Decimal, currency: str
    ) -> ProviderResult: ...


class SimulatedProvider:
    """Approves every charge up to ``decline_above``; declines above it, deterministically.
    The same payment id always gets the same transaction id (idempotent by payment id)."""

    def __init__(self, decline_above: Decimal) -> None:
        self.decline_above = decline_above

    async def charge(
        self, *, payment_id: str, amount: Decimal, currency: str, method: str
    ) -> ProviderResult:
        if amount > self.decline_above:
            return ProviderResult(False, reason=f"amount above the limit of {self.decline_above}")
        digest = hashlib.sha256(payment_id.encode()).hexdigest()[:24]
        return ProviderResult(True, transaction_id=f"txn_{digest}")

    async def refund(
        self, *, payment_id: str, transaction_id: str, amount: Decimal, currency: str
    ) -> ProviderResult:
        digest = hashlib.sha256(f"refund:{payment_id}".encode()).hexdigest()[:24]
        return ProviderResult(True, transaction_id=f"rfd_{digest}")
