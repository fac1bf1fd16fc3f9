"""Fault injection for the crash and timeout proofs: a testing aid, never on in production.

With ``SHOP_FAULT_INJECTION=1`` (refused by the settings when ``SHOP_ENV=production``) a
service mounts ``/internal/faults``, where a privileged caller (an admin or a service token)
installs rules, and a middleware applies them to the requests they match:

- ``status``: answer at once with this status (a problem), without running the handler;
- ``delay_before``: wait before running the handler (a slow dependency);
- ``delay_after``: run the handler, then hold the response: its transaction has committed,
  the caller has not heard, so it times out or the process is killed in that window.

Each rule applies to ``times`` matching requests (0: until removed). Tests drive it over HTTP
against real processes, so no code is edited to break anything.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import orjson
from fastapi import APIRouter, FastAPI
from pydantic import Field
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shop.common.deps import PrivilegedDep
from shop.common.errors import PROBLEM_CONTENT_TYPE, Problem
from shop.common.types import StrictModel


class FaultRule(StrictModel):
    method: str = Field(default="POST", pattern=r"^[A-Z]+$")
    path: str = Field(min_length=1, description="a regular expression the whole path must match")
    status: int | None = Field(default=None, ge=400, le=599)
    delay_before: float = Field(default=0.0, ge=0, le=300)
    delay_after: float = Field(default=0.0, ge=0, le=300)
    times: int = Field(default=1, ge=0, description="matching requests it applies to; 0: all")


class InstalledRule(FaultRule):
    remaining: int | None  # matching requests it still applies to; None: all


class InjectedFault(Problem):
    status, title, slug = 503, "Injected Fault", "injected-fault"


@dataclass
class _Installed:
    rule: FaultRule
    pattern: re.Pattern[str]
    remaining: int | None  # None: unlimited


class FaultPlan:
    """The installed rules; a match uses up one of the first matching rule's ``times``.

    Plain attributes, no lock: one event loop per process touches them, between awaits.
    """

    def __init__(self) -> None:
        self._rules: list[_Installed] = []

    def replace(self, rules: list[FaultRule]) -> None:
        self._rules = [_Installed(r, re.compile(r.path), r.times or None) for r in rules]

    def describe(self) -> list[InstalledRule]:
        return [InstalledRule(**i.rule.model_dump(), remaining=i.remaining) for i in self._rules]

    def take(self, method: str, path: str) -> FaultRule | None:
        for installed in self._rules:
            if installed.remaining == 0 or installed.rule.method != method:
                continue
            if installed.pattern.fullmatch(path):
                if installed.remaining is not None:
                    installed.remaining -= 1
                return installed.rule
        return None


class FaultMiddleware:
    def __init__(self, app: ASGIApp, plan: FaultPlan) -> None:
        self.app, self.plan = app, plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/internal/faults"):
            await self.app(scope, receive, send)
            return
        rule = self.plan.take(scope["method"], scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.delay_before:
            await asyncio.sleep(rule.delay_before)
        if rule.status is not None:
            fault = InjectedFault(f"Fault injected for {scope['method']} {scope['path']}.")
            body = {**fault.to_dict(), "status": rule.status}
            response = Response(
                orjson.dumps(body), status_code=rule.status, media_type=PROBLEM_CONTENT_TYPE
            )
            await response(scope, receive, send)
            return

        async def held_send(message: Message) -> None:
            if message["type"] == "http.response.start" and rule.delay_after:
                await asyncio.sleep(rule.delay_after)
            await send(message)

        await self.app(scope, receive, held_send)


def install(app: FastAPI) -> None:
    """Mount the rules endpoint and the middleware (called only when fault injection is on)."""
    plan = FaultPlan()
    app.state.faults = plan
    router = APIRouter(prefix="/internal/faults", include_in_schema=False)

    @router.put("")
    async def replace_rules(rules: list[FaultRule], _: PrivilegedDep) -> list[InstalledRule]:
        plan.replace(rules)
        return plan.describe()

    @router.get("")
    async def list_rules(_: PrivilegedDep) -> list[InstalledRule]:
        return plan.describe()

    app.include_router(router)
    app.add_middleware(FaultMiddleware, plan=plan)
