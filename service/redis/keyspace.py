"""Every Redis key and channel name gatekey uses, all under one namespace.

Every name one limiter script touches shares a Redis Cluster slot: a key without an owner has its
id as hash tag (`gk:{<key_id>}:...`); a key with an owner lives under the owner's tag
(`gk:{o:<owner>}:k:<key_id>:...`) beside the owner-wide limits (`gk:{o:<owner>}:tat:...`). A
key's state is named by its *ref*, `usage_ref(key_id, owner)`, which is also what the dirty set
holds, so the flusher finds each usage hash where the script wrote it. The flusher's global keys
share the `{usage}` tag, so RENAME works there too.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NAMESPACE = "gk"


def usage_ref(key_id: str, owner: str | None) -> str:
    """What names a key's Redis state: its id, or `<id>/<owner>` (an id never holds a `/`)."""
    return f"{key_id}/{owner}" if owner else key_id


def key_id_of(ref: str) -> str:
    return ref.partition("/")[0]


@dataclass(frozen=True, slots=True)
class RedisKeyspace:
    """Key and channel names under `namespace` (tests use a random one to stay apart).

    The limiter script writes `tat` and `usage`; the usage flusher reads `usage` and owns the
    `{usage}` keys; `directory` holds what a key hash verifies to; `key_changes` carries
    key-change announcements between processes.
    """

    namespace: str = DEFAULT_NAMESPACE

    def _key_prefix(self, ref: str) -> str:
        key_id, _, owner = ref.partition("/")
        if owner:
            return f"{self.namespace}:{{o:{owner}}}:k:{key_id}"
        return f"{self.namespace}:{{{key_id}}}"

    def tat(self, ref: str, limit: str) -> str:
        """String: the GCRA theoretical arrival time of one of the key's limits (`limit`: its
        window in seconds, `s` after a shadow one's) in microseconds of Redis time."""
        return f"{self._key_prefix(ref)}:tat:{limit}"

    def owner_tat(self, owner: str, limit: str) -> str:
        """String: as `tat`, for a limit all of an owner's keys share."""
        return f"{self.namespace}:{{o:{owner}}}:tat:{limit}"

    def credits(self, ref: str) -> str:
        """Hash: the key's credits {r: remaining, e: epoch, t: the last refill's period start}."""
        return f"{self._key_prefix(ref)}:credits"

    def usage(self, ref: str) -> str:
        """Hash: minute epoch (seconds) -> admitted requests in that minute, cumulative."""
        return f"{self._key_prefix(ref)}:usage"

    def batch(self, ref: str, batch_id: str) -> str:
        """String: marks a batch of deferred usage as applied to the key's usage hash."""
        return f"{self._key_prefix(ref)}:batch:{batch_id}"

    @property
    def dirty(self) -> str:
        """Set of key refs (`usage_ref`) whose usage changed since the flusher last claimed it."""
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

    @property
    def prune_gate(self) -> str:
        """String: set by the process that prunes expired usage, expiring after the interval."""
        return f"{self.namespace}:{{usage}}:prune"

    def directory(self, key_hash: str) -> str:
        """String: the key directory's entry for a key hash, `<version>|<record JSON>`."""
        return f"{self.namespace}:keydir:{key_hash}"

    @property
    def key_changes(self) -> str:
        """Pub/sub channel: one message per changed key, carrying its key id."""
        return f"{self.namespace}:keys:changed"
