"""`POST /v1/keys/verify` for other services (whoami and forward-auth live in `fastpath`)."""

from __future__ import annotations

import math

from fastapi import APIRouter, Response

from service.api.deps import StateDep
from service.api.problems import ratelimit_headers
from service.errors import KeyRejected, MissingScopes, RateLimited
from service.keys.record import KeyRecord
from service.keys.schemas import RateLimitInfo, VerifyRequest, VerifyResult
from service.keys.scopes import check_scope
from service.ratelimit.decision import RateLimitDecision
from service.results import KeyCheckResult

router = APIRouter(prefix="/v1", tags=["keys"])


def _ratelimit_info(decision: RateLimitDecision) -> RateLimitInfo:
    return RateLimitInfo(
        limit=decision.limit, remaining=decision.remaining, reset=math.ceil(decision.reset_s)
    )


def _result(
    code: KeyCheckResult, record: KeyRecord, decision: RateLimitDecision, response: Response
) -> VerifyResult:
    response.headers.update(ratelimit_headers(decision))
    return VerifyResult(
        valid=code is KeyCheckResult.VALID,
        code=code,
        key_id=record.id,
        owner=record.owner,
        scopes=list(record.scopes),
        metadata=record.metadata,
        ratelimit=None if decision.usage_exceeded else _ratelimit_info(decision),
        credits_remaining=decision.credits_remaining,
    )


@router.post("/keys/verify")
async def verify_key(body: VerifyRequest, state: StateDep, response: Response) -> VerifyResult:
    """Check a key for another service, and that it holds `required_scopes`; spends `cost` units
    (default 1; 0 only reports) of every limit of that key (a FORBIDDEN answer too, as on
    `/v1/auth`). `ratelimit` describes the binding limit: the refusing one, or the one closest to
    exhaustion."""
    required = frozenset(check_scope(scope) for scope in body.required_scopes)
    try:
        # No per-address budget here: the caller is a service checking its own users' keys, and
        # blocking its address would refuse all of them (the fast path and the key-taking routes
        # are where end users connect).
        admission = await state.guard.admit(body.key, required, cost=body.cost)
    except RateLimited as limited:
        return _result(limited.code, limited.record, limited.decision, response)
    except MissingScopes as forbidden:
        return _result(forbidden.code, forbidden.record, forbidden.decision, response)
    except KeyRejected as rejection:
        if rejection.code is KeyCheckResult.RATE_LIMITER_UNAVAILABLE:
            raise
        return VerifyResult(valid=False, code=rejection.code)
    return _result(KeyCheckResult.VALID, admission.record, admission.decision, response)
