"""Key-taking endpoints for clients and gateways: whoami, verify, forward-auth."""

from __future__ import annotations

import math

from fastapi import APIRouter, Response

from service.api.deps import PrincipalDep, StateDep
from service.api.problems import ratelimit_headers
from service.errors import KeyRejected
from service.guard import RateLimited
from service.keys.schemas import RateLimitInfo, VerifyRequest, VerifyResult, WhoAmI
from service.ratelimit.decision import RateLimitDecision

router = APIRouter(prefix="/v1", tags=["keys"])


def _ratelimit_info(decision: RateLimitDecision) -> RateLimitInfo:
    return RateLimitInfo(
        limit=decision.limit, remaining=decision.remaining, reset=math.ceil(decision.reset_s)
    )


@router.get("/whoami")
async def whoami(principal: PrincipalDep, state: StateDep) -> WhoAmI:
    """The calling key's identity, scopes and limit."""
    return WhoAmI(
        id=principal.id,
        name=principal.name,
        display_prefix=principal.display_prefix,
        owner=principal.owner,
        scopes=list(principal.scopes),
        rate_limit=str(state.guard.policy_for(principal)),
        expires_at=principal.expires_at,
    )


@router.get("/auth", status_code=200)
async def forward_auth(principal: PrincipalDep, response: Response) -> None:
    """Forward-auth target (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz)."""
    response.headers["X-Gatekey-Key-Id"] = str(principal.id)
    response.headers["X-Gatekey-Owner"] = principal.owner or ""


@router.post("/keys/verify")
async def verify_key(body: VerifyRequest, state: StateDep, response: Response) -> VerifyResult:
    """Check a key for another service; spends one unit of that key's limit."""
    try:
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
        if rejection.code == "RATE_LIMITER_UNAVAILABLE":
            raise
        return VerifyResult(valid=False, code=rejection.code)
    record = admission.record
    response.headers.update(ratelimit_headers(admission.decision))
    return VerifyResult(
        valid=True,
        code="VALID",
        key_id=record.id,
        owner=record.owner,
        scopes=list(record.scopes),
        ratelimit=_ratelimit_info(admission.decision),
    )
