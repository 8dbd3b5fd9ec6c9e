"""Request and response bodies of the key endpoints (no class docstrings here: pydantic would
publish each as its schema's description in the OpenAPI document)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator

from service.errors import InvalidInput
from service.keys.record import KeyRecord
from service.keys.scopes import MAX_REQUIRED_SCOPES
from service.ratelimit.credits import MAX_CREDITS
from service.ratelimit.policy import MAX_LIMITS


# A key as the admin API and the CLI show it: `KeyRecord` itself under the name the OpenAPI
# document gives it (FastAPI and pydantic take stdlib dataclasses as they are).
class KeyOut(KeyRecord):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class KeyIssued(KeyOut):
    key: Annotated[str, Field(description="the plaintext key; shown this once, never stored")]


class KeyList(BaseModel):
    keys: list[KeyOut]
    # Pass as `cursor` for the next page; null when this page is the last.
    next_cursor: str | None


_KEY_OUT = TypeAdapter(KeyOut)


def key_json(record: KeyRecord) -> dict[str, Any]:
    """The admin API's body of a key as JSON-ready values (the CLI's `--json`)."""
    body: dict[str, Any] = _KEY_OUT.dump_python(KeyOut.of(record), mode="json")
    return body


_METADATA = "a JSON object of at most 4096 bytes as compact JSON, returned on every check"
_CREDITS = "units the key's requests spend (their cost); setting them starts the count again"
_REFILL = "N/second|minute|hour|day: credits set back to N at each period boundary"


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    owner: str | None = Field(None, max_length=200)
    scopes: list[str] = Field(default_factory=list, max_length=50)
    rate_limits: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, max_length=MAX_LIMITS, examples=[["10/second", "10000/day"]]
    )
    rate_limit: str | None = Field(
        None, max_length=40, description="deprecated: one limit, as `rate_limits: [...]`"
    )
    credits: int | None = Field(None, ge=0, le=MAX_CREDITS, strict=True, description=_CREDITS)
    refill: str | None = Field(None, max_length=40, examples=["1000/day"], description=_REFILL)
    expires_in: str | None = Field(None, max_length=32, examples=["30d"])
    metadata: dict[str, Any] = Field(default_factory=dict, description=_METADATA)


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    owner: str | None = Field(None, max_length=200)
    scopes: list[str] | None = Field(None, max_length=50)
    metadata: dict[str, Any] | None = Field(None, description=_METADATA + "; replaces the whole")
    enabled: bool | None = Field(
        None, strict=True, description="false refuses the key (DISABLED) until true"
    )
    expires_at: datetime | None = Field(
        None,
        description="ISO 8601 with a time zone; null: never expires; left out: unchanged",
        examples=["2030-01-01T00:00:00Z"],
    )
    rate_limits: list[Annotated[str, Field(max_length=40)]] | None = Field(
        None, max_length=MAX_LIMITS, description="replaces every limit; [] restores the default"
    )
    rate_limit: str | None = Field(
        None, max_length=40, description="deprecated: one limit, as `rate_limits: [...]`"
    )
    credits: int | None = Field(None, ge=0, le=MAX_CREDITS, strict=True, description=_CREDITS)
    refill: str | None = Field(None, max_length=40, examples=["1000/day"], description=_REFILL)

    @field_validator("metadata", "enabled")
    @classmethod
    def _not_null(cls, value: object, info: ValidationInfo) -> object:
        # Left out leaves the field as it is; an explicit null has no meaning for these two.
        if value is None:
            raise ValueError(f"{info.field_name} cannot be null; leave it out to keep it")
        return value


def requested_limits(rate_limits: list[str] | None, rate_limit: str | None) -> list[str] | None:
    """`rate_limits`, or the old single `rate_limit` as a one-element list (never both)."""
    if rate_limit is None:
        return rate_limits
    if rate_limits:
        raise InvalidInput("rate_limit: give rate_limits or rate_limit, not both")
    return [rate_limit]


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace: str = Field("0s", max_length=32, examples=["24h"])


# A cost bound far above any limit's burst a key would have, far below integer trouble in Lua.
MAX_COST = 1_000_000


class RateLimitInfo(BaseModel):
    limit: int
    remaining: int
    reset: int


class VerifyRequest(BaseModel):
    key: str = Field(max_length=256)
    required_scopes: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=MAX_REQUIRED_SCOPES,
        description="scopes the key must hold, else `valid: false` with code FORBIDDEN",
    )
    cost: int = Field(
        1,
        ge=0,
        le=MAX_COST,
        strict=True,
        description="units charged to every limit of the key (0: report without charging)",
    )


class VerifyResult(BaseModel):
    valid: bool
    code: str
    key_id: uuid.UUID | None = None
    owner: str | None = None
    scopes: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    ratelimit: RateLimitInfo | None = None
    credits_remaining: int | None = Field(
        None, description="the key's credits left after this check; null: it has none"
    )


# What a key may learn about itself: the fields of `KeyRecord` chosen here, with the limits in
# force (the default policy's when the key has none of its own).
class WhoAmI(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    display_prefix: str
    owner: str | None
    scopes: list[str]
    rate_limits: list[str]
    owner_rate_limits: list[str]
    expires_at: datetime | None
    metadata: dict[str, Any]

    @classmethod
    def of(cls, record: KeyRecord, rate_limits: tuple[str, ...]) -> WhoAmI:
        return cls.model_validate(replace(record, rate_limits=rate_limits))
