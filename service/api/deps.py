"""Typed dependency aliases, so handlers read as plain functions of what they need."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.credentials import client_address, presented_key
from service.api.problems import ratelimit_headers
from service.errors import Forbidden
from service.keys.record import KeyRecord
from service.state import AppState


async def get_state(request: Request) -> AppState:
    # async: FastAPI runs a plain `def` dependency in a thread, a hop on every request.
    state: AppState = request.app.state.gatekey
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.database.get_session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_principal(request: Request, response: Response, state: StateDep) -> KeyRecord:
    """The verified key behind the request; one unit of its limit is spent."""
    scope = request.scope
    admission = await state.guard.admit(presented_key(scope["headers"]), client_address(scope))
    response.headers.update(ratelimit_headers(admission.decision))
    return admission.record


PrincipalDep = Annotated[KeyRecord, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> KeyRecord:
    if "admin" not in principal.scopes:
        raise Forbidden("this endpoint needs a key with scope 'admin'")
    return principal


AdminDep = Annotated[KeyRecord, Depends(get_admin)]
