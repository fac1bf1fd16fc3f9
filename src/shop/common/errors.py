"""Errors as RFC 9457 problems.

Domain code raises a ``Problem`` subclass; the app factory's handlers turn every error,
including framework ones and anything unexpected, into ``application/problem+json``::

    Problem                      status  when
    ├── BadRequest               400     the body is not JSON
    ├── Unauthorized             401     missing, invalid or expired token
    ├── Forbidden                403     authenticated but not allowed
    ├── NotFound                 404     no such resource (or not yours)
    ├── Conflict                 409     duplicate, insufficient stock, invalid transition
    ├── PayloadTooLarge          413     body over the limit
    ├── Unprocessable            422     well-formed but invalid
    ├── PaymentDeclined          402     the provider declined
    ├── RateLimited              429     too many requests (Retry-After)
    └── ServiceUnavailable       503     a dependency is down (Retry-After)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from shop.common.types import Json, JsonObject

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://shop.example.com/problems/"


class Problem(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    slug: ClassVar[str] = "internal"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[Mapping[str, Json]] | None = None,
        headers: dict[str, str] | None = None,
        extra: Mapping[str, Json] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}

    def to_dict(self) -> JsonObject:
        return problem_body(
            self.status, self.title, self.detail, slug=self.slug, errors=self.errors, **self.extra
        )


def problem_body(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    errors: Sequence[Mapping[str, Json]] | None = None,
    **extra: Json,
) -> JsonObject:
    body: JsonObject = {
        "type": PROBLEM_TYPE_BASE + (slug or str(status)),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return body


class BadRequest(Problem):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: Mapping[str, Json] | None = None,
    ) -> None:
        super().__init__(detail, headers=headers, extra=extra)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class PaymentDeclined(Problem):
    status, title, slug = 402, "Payment Declined", "payment-declined"


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not Found", "not-found"


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(Problem):
    status, title, slug = 413, "Payload Too Large", "payload-too-large"


class Unprocessable(Problem):
    status, title, slug = 422, "Unprocessable Content", "validation"


class _TryLater(Problem):
    """A problem whose answer says when to try again: ``Retry-After``, in seconds (the
    class's ``retry_after`` unless the raiser gives one)."""

    retry_after = 1

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: int | None = None,
        errors: Sequence[Mapping[str, Json]] | None = None,
        extra: Mapping[str, Json] | None = None,
    ) -> None:
        super().__init__(detail, errors=errors, extra=extra)
        self.headers["Retry-After"] = str(self.retry_after if retry_after is None else retry_after)


class RateLimited(_TryLater):
    status, title, slug = 429, "Too Many Requests", "rate-limited"
    retry_after = 1


class ServiceUnavailable(_TryLater):
    status, title, slug = 503, "Service Unavailable", "unavailable"
    retry_after = 2
