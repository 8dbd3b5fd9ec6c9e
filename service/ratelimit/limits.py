"""`LimitSet`: every limit one key's requests are checked against at once, the key's own and its
owner's, in the order the limiter's script receives them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from service.ratelimit.gcra import GcraParams, gcra_params
from service.ratelimit.policy import RateLimitPolicy


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit: `owner_wide` limits count the requests of all the owner's keys together."""

    policy: RateLimitPolicy
    owner_wide: bool
    name: str  # its name in `RateLimit-Policy` and `RateLimit`

    @property
    def suffix(self) -> str:
        """What tells this limit's counter apart from the other limits of the key or owner."""
        return f"{self.policy.window_s}{'s' if self.policy.shadow else ''}"

    def subject(self, key_id: str, owner: str | None) -> str:
        """The in-process limiter's name of this limit's counter for `key_id`."""
        if self.owner_wide:
            return f"o:{owner}:{self.suffix}"
        return f"{key_id}:{self.suffix}"


@dataclass(frozen=True, slots=True)
class LimitSet:
    """`limits` hold at least one enforced limit; `policy_header` lists every enforced one in
    the IETF draft's form; `script_args` are the script's per-limit arguments."""

    limits: tuple[Limit, ...]
    params: tuple[GcraParams, ...]
    policy_header: str
    script_args: tuple[int, ...]

    @property
    def has_owner_limits(self) -> bool:
        return any(limit.owner_wide for limit in self.limits)


@lru_cache(maxsize=4096)
def limit_set(
    own: tuple[RateLimitPolicy, ...],
    owner_wide: tuple[RateLimitPolicy, ...] = (),
    *,
    default: RateLimitPolicy | None = None,
) -> LimitSet:
    """The set of a key's limits; `default` is enforced too when `own` enforces nothing (a key
    with no limit, or only shadow ones, keeps the default policy)."""
    if default is not None and all(policy.shadow for policy in own):
        own = (default, *own)
    enforced = [policy for policy in (*own, *owner_wide) if not policy.shadow]
    if not enforced:
        raise ValueError("a limit set needs an enforced limit")
    is_single = len(enforced) == 1 and not owner_wide

    def named(policy: RateLimitPolicy, owner: bool) -> Limit:
        if is_single and not policy.shadow:
            return Limit(policy, owner, "default")  # the name a one-limit key has always had
        kind = "owner" if owner else "key"
        return Limit(policy, owner, f"{kind}-{policy.unit}" + ("-shadow" if policy.shadow else ""))

    limits = tuple(
        [named(policy, False) for policy in own] + [named(policy, True) for policy in owner_wide]
    )
    params = tuple(gcra_params(limit.policy) for limit in limits)
    header = ", ".join(
        f'"{limit.name}";q={p.limit};w={p.window_s}'
        for limit, p in zip(limits, params, strict=True)
        if not p.shadow
    )
    args = tuple(value for p in params for value in (p.emission_us, p.tolerance_us, int(p.shadow)))
    return LimitSet(limits, params, header, args)


def single(policy: RateLimitPolicy) -> LimitSet:
    """One enforced limit (failed verifications per client address, tests)."""
    return limit_set((policy,))
