"""`AppState`: a worker's resources as the routes see them; `service.resources` opens them."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings
from service.db import Database
from service.guard import Guard
from service.keys.events import RedisKeyChangePublisher
from service.keys.feed import KeyChangeFeed
from service.keys.format import KeyFormat
from service.keys.verifier import KeyVerifier
from service.metrics import Metrics
from service.ratelimit.limiter import RateLimiter


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    database: Database
    key_format: KeyFormat
    verifier: KeyVerifier
    limiter: RateLimiter
    guard: Guard
    metrics: Metrics
    key_events: RedisKeyChangePublisher | None
    key_feed: KeyChangeFeed
