from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field

from shop.common.types import Page, StrictModel


class UserCreate(StrictModel):
    username: str = Field(
        min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$", examples=["john_doe"]
    )
    email: EmailStr = Field(max_length=254, examples=["john@example.com"])
    password: str = Field(min_length=8, max_length=256, examples=["correct horse battery"])


class UserRead(BaseModel):
    id: int
    username: str
    email: str
    role: Literal["customer", "admin"]
    created_at: datetime


class LoginRequest(StrictModel):
    username: str = Field(min_length=1, max_length=254, description="Username or email.")
    password: str = Field(min_length=1, max_length=256)


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
    refresh_token: str = Field(min_length=16, max_length=256)


UserPage = Page[UserRead]
