"""Settings: every variable of the README's configuration table, validated once at the edges."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.durations import parse_duration
from service.errors import InvalidInput
from service.ratelimit.policy import parse_rate_limit
from service.redis.url import parse_redis_url

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/gatekey"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _check_rate_limit(value: str) -> str:
    try:
        parse_rate_limit(value)
    except InvalidInput as exc:  # pydantic reports ValueError, naming the variable
        raise ValueError(exc.message) from None
    return value


def _check_positive_duration(value: str) -> str:
    try:
        duration = parse_duration(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    if not duration:
        raise ValueError("must be longer than 0s")
    return value


def _check_database_url(value: str) -> str:
    if not value.startswith("postgresql+asyncpg://"):
        raise ValueError("must start with postgresql+asyncpg://")
    return value


def _check_trusted_proxies(value: str) -> str:
    """Comma-separated addresses or CIDRs (uvicorn's `forwarded_allow_ips` takes both)."""
    networks = [part.strip() for part in value.split(",") if part.strip()]
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"{network!r} is not an IP address or CIDR") from None
    return ",".join(networks)


def _check_redis_url(value: str) -> str:
    parse_redis_url(value)  # a ValueError names what is wrong; pydantic adds the variable
    return value


class RateLimitBackend(StrEnum):
    REDIS = "redis"
    MEMORY = "memory"


class RedisErrorPolicy(StrEnum):
    LOCAL = "local"
    ALLOW = "allow"
    DENY = "deny"


class LogFormat(StrEnum):
    CONSOLE = "console"
    JSON = "json"


class Settings(BaseSettings):
    """Process configuration; constructed at start-up and passed to whatever needs it."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: Annotated[str, AfterValidator(_check_database_url)] = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(30, ge=1)
    database_pool_max_overflow: int = Field(10, ge=0)
    database_pool_timeout: float = Field(2.0, gt=0)
    database_pool_recycle: int = Field(1800, ge=1)
    database_pgbouncer: bool = Field(
        False,
        description="DATABASE_URL points at PgBouncer in transaction pooling mode: no named "
        "prepared statement outlives its transaction, and PostgreSQL's max_connections is "
        "PgBouncer's to budget, not the workers'",
    )

    rate_limit_backend: RateLimitBackend = RateLimitBackend.REDIS
    redis_url: Annotated[str, AfterValidator(_check_redis_url)] = Field(
        DEFAULT_REDIS_URL,
        description="one server (redis://), a Cluster (redis+cluster://h:p,h:p) or the master "
        "Sentinel names (redis+sentinel://h:p,h:p/name)",
    )
    rate_limit_default: Annotated[str, AfterValidator(_check_rate_limit)] = "1000/minute"
    rate_limit_on_redis_error: RedisErrorPolicy = RedisErrorPolicy.LOCAL
    redis_timeout: float = Field(0.05, gt=0, description="seconds per Redis call")
    redis_namespace: str = Field(
        "gk", pattern=r"^[A-Za-z0-9_.-]{1,32}$", description="prefix of every Redis key and channel"
    )

    web_concurrency: int | None = Field(None, ge=1)

    key_prefix: str = Field("gk", pattern=r"^[a-z][a-z0-9]{0,15}$")
    key_pepper: SecretStr | None = None
    # At most 1 s: the README promises that a revoke is refused within 1 s even when its pub/sub
    # announcement is lost and the change feed is stale, and this lifetime is what bounds that.
    key_cache_ttl: float = Field(
        0.5, gt=0, le=1, description="seconds a verification is reused (at most 1)"
    )
    key_cache_max_age: float = Field(
        300.0, gt=0, description="seconds a verification is reused while the change feed is fresh"
    )

    usage_flush_interval: float = Field(2.0, gt=0)
    usage_retention: Annotated[str, AfterValidator(_check_positive_duration)] = Field(
        "90d", description="how long per-minute usage rows are kept (30d, 90d, 1y as 365d)"
    )

    max_body_bytes: int = Field(
        65_536, ge=1024, le=64 * 1024 * 1024, description="largest request body; larger: 413"
    )
    max_header_bytes: int = Field(
        16_384,
        ge=1024,
        le=1024 * 1024,
        description="largest request line plus headers; larger: 431",
    )
    trusted_proxies: Annotated[str, AfterValidator(_check_trusted_proxies)] = Field(
        "", description="comma-separated IPs/CIDRs whose X-Forwarded-For names the client"
    )
    failed_verification_limit: Annotated[str, AfterValidator(_check_rate_limit)] = Field(
        "60/minute", description="failed key verifications per client address; past it: 429"
    )
    docs_enabled: bool = Field(True, description="serve /docs, /redoc and /openapi.json")

    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_format: LogFormat = LogFormat.CONSOLE

    def is_explicit(self, field_name: str) -> bool:
        """True when the value came from the environment or `.env` rather than the default."""
        return field_name in self.model_fields_set


class SettingsError(Exception):
    """A configuration value is invalid; `str()` is one line naming the variable."""


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning validation errors into one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None
