"""`/v1/admin/owners/{owner}/limits`: an owner's limits over HTTP, for keys with scope `admin`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import AdminDep, SessionDep, StateDep
from service.audit.service import key_actor
from service.owners import service
from service.ratelimit.policy import MAX_LIMITS

router = APIRouter(prefix="/v1/admin/owners", tags=["admin"])


OwnerPath = Annotated[str, Path(min_length=1, max_length=200, description="the owner's name")]


class OwnerLimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate_limits: list[Annotated[str, Field(max_length=40)]] = Field(
        max_length=MAX_LIMITS,
        examples=[["1000/minute"]],
        description="replaces every limit of the owner; [] removes them",
    )


class OwnerLimitsOut(BaseModel):
    owner: str
    rate_limits: list[str]


def _out(record: service.OwnerLimitsRecord) -> OwnerLimitsOut:
    return OwnerLimitsOut(owner=record.owner, rate_limits=list(record.rate_limits))


@router.put("/{owner}/limits")
async def set_owner_limits(
    owner: OwnerPath, body: OwnerLimitsIn, admin: AdminDep, session: SessionDep, state: StateDep
) -> OwnerLimitsOut:
    """Replace the limits all of the owner's keys share, on top of each key's own."""
    record = await service.set_owner_limits(
        session=session,
        owner=owner,
        rate_limits=body.rate_limits,
        listener=state.key_events,
        actor=key_actor(admin.record.id),
    )
    return _out(record)


@router.get("/{owner}/limits")
async def show_owner_limits(
    owner: OwnerPath, admin: AdminDep, session: SessionDep
) -> OwnerLimitsOut:
    """The owner's limits (empty when it has none)."""
    return _out(await service.get_owner_limits(session=session, owner=owner))
