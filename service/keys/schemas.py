"""Request and response bodies of the key endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from service.keys.record import KeyRecord


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    display_prefix: str
    owner: str | None
    scopes: list[str]
    rate_limit: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    replaced_by_id: uuid.UUID | None

    @classmethod
    def of(cls, record: KeyRecord) -> KeyOut:
        return cls(
            id=record.id,
            name=record.name,
            display_prefix=record.display_prefix,
            owner=record.owner,
            scopes=list(record.scopes),
            rate_limit=record.rate_limit,
            created_at=record.created_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            last_used_at=record.last_used_at,
            replaced_by_id=record.replaced_by_id,
        )


class KeyIssued(KeyOut):
    key: str = Field(description="the plaintext key; shown this once, never stored")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    owner: str | None = Field(None, max_length=200)
    scopes: list[str] = Field(default_factory=list, max_length=50)
    rate_limit: str | None = Field(None, max_length=32, examples=["100/minute"])
    expires_in: str | None = Field(None, max_length=32, examples=["30d"])


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    owner: str | None = Field(None, max_length=200)
    scopes: list[str] | None = Field(None, max_length=50)
    rate_limit: str | None = Field(None, max_length=32)


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace: str = Field("0s", max_length=32, examples=["24h"])


class RateLimitInfo(BaseModel):
    limit: int
    remaining: int
    reset: int


class VerifyRequest(BaseModel):
    key: str = Field(max_length=256)


class VerifyResult(BaseModel):
    valid: bool
    code: str
    key_id: uuid.UUID | None = None
    owner: str | None = None
    scopes: list[str] = Field(default_factory=list)
    ratelimit: RateLimitInfo | None = None


class WhoAmI(BaseModel):
    id: uuid.UUID
    name: str
    display_prefix: str
    owner: str | None
    scopes: list[str]
    rate_limit: str
    expires_at: datetime | None

    @classmethod
    def of(cls, record: KeyRecord, rate_limit: str) -> WhoAmI:
        return cls(
            id=record.id,
            name=record.name,
            display_prefix=record.display_prefix,
            owner=record.owner,
            scopes=list(record.scopes),
            rate_limit=rate_limit,
            expires_at=record.expires_at,
        )
