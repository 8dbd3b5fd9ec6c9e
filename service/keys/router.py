"""`POST /v1/keys/verify` for other services (whoami and forward-auth live in `fastpath`)."""

from __future__ import annotations

import math

from fastapi import APIRouter, Response

from service.api.deps import StateDep
from service.api.problems import ratelimit_headers
from service.errors import KeyRejected, RateLimited
from service.keys.schemas import RateLimitInfo, VerifyRequest, VerifyResult
from service.ratelimit.decision import RateLimitDecision
from service.results import KeyCheckResult

router = APIRouter(prefix="/v1", tags=["keys"])


def _ratelimit_info(decision: RateLimitDecision) -> RateLimitInfo:
    return RateLimitInfo(
        limit=decision.limit, remaining=decision.remaining, reset=math.ceil(decision.reset_s)
    )


@router.post("/keys/verify")
async def verify_key(body: VerifyRequest, state: StateDep, response: Response) -> VerifyResult:
    """Check a key for another service; spends one unit of that key's limit."""
    try:
        # No per-address budget here: the caller is a service checking its own users' keys, and
        # blocking its address would refuse all of them (the fast path and the key-taking routes
        # are where end users connect).
        admission = await state.guard.admit(body.key)
    except RateLimited as limited:
        response.headers.update(ratelimit_headers(limited.decision))
        return VerifyResult(
            valid=False,
            code=limited.code,
            key_id=limited.record.id,
            owner=limited.record.owner,
            scopes=list(limited.record.scopes),
            ratelimit=_ratelimit_info(limited.decision),
        )
    except KeyRejected as rejection:
        if rejection.code is KeyCheckResult.RATE_LIMITER_UNAVAILABLE:
            raise
        return VerifyResult(valid=False, code=rejection.code)
    record = admission.record
    response.headers.update(ratelimit_headers(admission.decision))
    return VerifyResult(
        valid=True,
        code=KeyCheckResult.VALID,
        key_id=record.id,
        owner=record.owner,
        scopes=list(record.scopes),
        ratelimit=_ratelimit_info(admission.decision),
    )
