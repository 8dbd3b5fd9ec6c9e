"""Scope names: the one charset, the admin scopes, and the required scopes a gateway asks for."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl

from service.errors import InvalidInput

SCOPE_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
ADMIN = "admin"
# Minting, granting or rotating a key that carries an admin scope over HTTP needs this one too:
# a leaked `admin` key alone cannot breed admin keys (the CLI, run on the host, always can).
ADMIN_GRANT = "admin:grant"
ADMIN_SCOPES = frozenset({ADMIN, ADMIN_GRANT})
# The header a gateway sets to name the scopes a route needs (comma-separated), beside `?scope=`.
REQUIRED_SCOPES_HEADER = "x-gatekey-required-scopes"
MAX_REQUIRED_SCOPES = 20


def check_scope(scope: str) -> str:
    if not SCOPE_RE.match(scope):
        raise InvalidInput(f"invalid scope {scope!r}: lower-case letters, digits and _.:-")
    return scope


def grants_admin(scopes: Iterable[str]) -> bool:
    return not ADMIN_SCOPES.isdisjoint(scopes)


@functools.lru_cache(maxsize=1024)
def required_scopes(query: bytes, header: bytes) -> frozenset[str]:
    """The scopes a forward-auth request requires: every `scope` query parameter and the header,
    each a comma-separated list. Cached: a gateway sends the same few strings all day."""
    values = [value for name, value in parse_qsl(query.decode("latin-1")) if name == "scope"]
    values.append(header.decode("latin-1"))
    scopes = frozenset(
        check_scope(item.strip()) for value in values for item in value.split(",") if item.strip()
    )
    if len(scopes) > MAX_REQUIRED_SCOPES:
        raise InvalidInput(f"at most {MAX_REQUIRED_SCOPES} required scopes")
    return scopes
