"""Typed dependency aliases, so handlers read as plain functions of what they need."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.credentials import client_address, presented_key
from service.api.problems import ratelimit_headers
from service.errors import Forbidden
from service.guard import Admission
from service.keys.record import KeyRecord
from service.keys.scopes import ADMIN
from service.results import KeyCheckResult
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
    admission = await state.guard.admit(
        presented_key(scope["headers"]), client=client_address(scope)
    )
    response.headers.update(ratelimit_headers(admission.decision))
    return admission.record


PrincipalDep = Annotated[KeyRecord, Depends(get_principal)]


_ADMIN_REQUIRED = frozenset({ADMIN})


async def get_admin(
    request: Request, response: Response, state: StateDep
) -> AsyncIterator[Admission]:
    """A key with scope `admin`, admitted. Its check is counted once, when the handler is done:
    `FORBIDDEN` if the handler refused it (an admin grant it may not make), else `VALID`."""
    scope = request.scope
    admission = await state.guard.admit(
        presented_key(scope["headers"]),
        _ADMIN_REQUIRED,
        client=client_address(scope),
        report_valid=False,
    )
    response.headers.update(ratelimit_headers(admission.decision))
    result = KeyCheckResult.VALID
    try:
        yield admission
    except Forbidden:
        result = KeyCheckResult.FORBIDDEN
        raise
    finally:
        state.guard.report(result)


AdminDep = Annotated[Admission, Depends(get_admin)]
