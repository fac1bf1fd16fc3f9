from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from shop.common.types import Page, StrictModel, text


def _email(value: str) -> str:
    """An address as email-validator (pydantic's EmailStr) checks it, normalised; whether mail
    arrives is not checked."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None


def _any_case(name: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in name)


# Names reserved for special use (RFC 6761: .local, .test, ...) are refused, and the schema
# says so (format email alone allows them).
_SPECIAL_USE = "|".join(_any_case(name) for name in SPECIAL_USE_DOMAIN_NAMES)
Email = Annotated[
    str,
    AfterValidator(_email),
    WithJsonSchema(
        {
            "type": "string",
            "format": "email",
            "maxLength": 254,
            "not": {"pattern": f"[@.](?:{_SPECIAL_USE})\\.?$"},
        }
    ),
]


class UserCreate(StrictModel):
    username: str = text(3, 32, chars="A-Za-z0-9_.-", examples=["john_doe"])
    email: Email = Field(max_length=254, examples=["john@example.com"])
    password: str = text(8, 256, examples=["correct horse battery"])


class UserRead(BaseModel):
    id: int
    username: str
    email: str
    role: Literal["customer", "admin"]
    created_at: datetime


class LoginRequest(StrictModel):
    username: str = text(1, 254, description="Username or email.")
    password: str = text(1, 256)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="Seconds the access token is valid.")
    refresh_token: str = Field(
        description="Opaque; exchange it at POST /api/v1/users/refresh for new tokens. "
        "Single use: each refresh returns the next one."
    )
    refresh_expires_in: int = Field(description="Seconds the refresh token is valid.")


class RefreshRequest(StrictModel):
    refresh_token: str = text(16, 256)


UserPage = Page[UserRead]
