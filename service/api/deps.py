"""Typed dependency aliases, so handlers read as plain functions of what they need."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.problems import ratelimit_headers
from service.errors import Forbidden, KeyRejected
from service.keys.record import KeyRecord
from service.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.gatekey
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.database.get_session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def presented_key(request: Request) -> str:
    """The key from `X-API-Key` or `Authorization: Bearer`; raises `MISSING_KEY` when absent."""
    key = request.headers.get("x-api-key")
    if key is None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials:
            key = credentials.strip()
    if not key:
        raise KeyRejected("MISSING_KEY", "send the key in X-API-Key or Authorization: Bearer")
    return key


async def get_principal(request: Request, response: Response, state: StateDep) -> KeyRecord:
    """The verified key behind the request; one unit of its limit is spent."""
    admission = await state.guard.admit(presented_key(request))
    response.headers.update(ratelimit_headers(admission.decision))
    return admission.record


PrincipalDep = Annotated[KeyRecord, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> KeyRecord:
    if "admin" not in principal.scopes:
        raise Forbidden("this endpoint needs a key with scope 'admin'")
    return principal


AdminDep = Annotated[KeyRecord, Depends(get_admin)]
