"""The payment-provider interface and the built-in simulated provider."""

from __future__ import annotations

import secrets
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
    """Approves every charge up to ``decline_above``; declines above it, deterministically."""

    def __init__(self, decline_above: Decimal) -> None:
        self.decline_above = decline_above

    async def charge(
        self, *, payment_id: str, amount: Decimal, currency: str, method: str
    ) -> ProviderResult:
        if amount > self.decline_above:
            return ProviderResult(False, reason=f"amount above the limit of {self.decline_above}")
        return ProviderResult(True, transaction_id=f"txn_{secrets.token_hex(12)}")

    async def refund(
        self, *, payment_id: str, transaction_id: str, amount: Decimal, currency: str
    ) -> ProviderResult:
        return ProviderResult(True, transaction_id=f"rfd_{secrets.token_hex(12)}")
