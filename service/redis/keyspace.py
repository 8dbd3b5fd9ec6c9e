"""Every Redis key and channel name gatekey uses, all under one namespace.

Per-key names carry the key id as a hash tag (`gk:{<key_id>}:...`), so a hit's keys sit in one
Redis Cluster slot; the flusher's global keys share the `{usage}` tag, so RENAME works there too.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NAMESPACE = "gk"


@dataclass(frozen=True, slots=True)
class RedisKeyspace:
    """Key and channel names under `namespace` (tests use a random one to stay apart).

    The limiter script writes `tat` and `usage`; the usage flusher reads `usage` and owns the
    `{usage}` keys; `directory` holds what a key hash verifies to; `key_changes` carries
    key-change announcements between processes.
    """

    namespace: str = DEFAULT_NAMESPACE

    def tat(self, key_id: str, limit: str) -> str:
        """String: the GCRA theoretical arrival time of one of the key's limits (`limit`: its
        window in seconds, `s` after a shadow one's) in microseconds of Redis time."""
        return f"{self.namespace}:{{{key_id}}}:tat:{limit}"

    def usage(self, key_id: str) -> str:
        """Hash: minute epoch (seconds) -> admitted requests in that minute, cumulative."""
        return f"{self.namespace}:{{{key_id}}}:usage"

    def batch(self, key_id: str, batch_id: str) -> str:
        """String: marks a batch of deferred usage as applied to the key's usage hash."""
        return f"{self.namespace}:{{{key_id}}}:batch:{batch_id}"

    @property
    def dirty(self) -> str:
        """Set of key ids whose usage changed since the flusher last claimed the set."""
        return f"{self.namespace}:{{usage}}:dirty"

    @property
    def processing(self) -> str:
        """The dirty set as claimed by a flusher; left behind if that flusher died mid-way."""
        return f"{self.namespace}:{{usage}}:processing"

    @property
    def flush_lock(self) -> str:
        return f"{self.namespace}:{{usage}}:lock"

    @property
    def flushed(self) -> str:
        """String: set by a complete flush, expiring after the flush interval."""
        return f"{self.namespace}:{{usage}}:flushed"

    def directory(self, key_hash: str) -> str:
        """String: the key directory's entry for a key hash, `<version>|<record JSON>`."""
        return f"{self.namespace}:keydir:{key_hash}"

    @property
    def key_changes(self) -> str:
        """Pub/sub channel: one message per changed key, carrying its key id."""
        return f"{self.namespace}:keys:changed"
