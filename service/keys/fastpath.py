"""`GET /v1/whoami` and forward-auth (`/v1/auth`) in pure ASGI: the hot path of gateways.

Written by hand because FastAPI's routing and dependency solving cost more CPU per request than
the whole key check (profiled with py-spy under `make bench`: about half of the app's time). These
endpoints read no body and at most a `scope` parameter, so nothing of what FastAPI adds is needed;
every other endpoint stays an ordinary FastAPI route. Errors go through the same problem+json
mapping.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.credentials import client_address, presented_key
from service.api.problems import error_response, problem, ratelimit_headers
from service.errors import GatekeyError, KeyRejected
from service.guard import Admission
from service.keys.record import KeyRecord
from service.keys.schemas import WhoAmI
from service.keys.scopes import REQUIRED_SCOPES_HEADER, required_scopes
from service.state import AppState

_JSON = (b"content-type", b"application/json")
_MAX_BODIES = 10_000
AUTH = "/v1/auth"
# Envoy's HTTP ext_authz prepends the original path to its path prefix: everything below is auth.
AUTH_PREFIX = "/v1/auth/"
_REQUIRED_HEADER = REQUIRED_SCOPES_HEADER.encode()


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode("latin-1")) for name, value in headers.items()]


class KeyFastPath:
    """Answers the two routes itself and passes everything else on to the FastAPI app.

    It puts a `Route` for the template in the scope, as routing would, so the request metrics
    label these requests by route like any other.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes = {"/v1/whoami": Route("/v1/whoami", self), AUTH: Route(AUTH, self)}
        self._below_auth = Route(AUTH_PREFIX + "{path:path}", self)
        # KeyRecord is frozen and hashable: each cached record's whoami body is built once.
        self._whoami_bodies: dict[tuple[KeyRecord, tuple[str, ...]], bytes] = {}
        self._rejections: dict[tuple[str, str], tuple[int, list[tuple[bytes, bytes]], bytes]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        route = self._routes.get(path)
        if route is None:
            if not path.startswith(AUTH_PREFIX):
                await self.app(scope, receive, send)
                return
            route = self._below_auth
        scope["route"] = route
        is_whoami = route.path == "/v1/whoami"
        if is_whoami and scope["method"] != "GET":
            detail = f"{scope['method']} is not allowed here; use GET"
            await problem(405, "METHOD_NOT_ALLOWED", detail, {"Allow": "GET"})(scope, receive, send)
            return
        state: AppState = scope["app"].state.gatekey
        try:
            required = frozenset() if is_whoami else _required_scopes(scope, route.path == AUTH)
            key = presented_key(scope["headers"])
            admission = await state.guard.admit(key, required, client=client_address(scope))
        except KeyRejected as error:
            await self._send_rejection(error, send)
            return
        except GatekeyError as error:
            await error_response(error)(scope, receive, send)
            return
        headers = _encode(ratelimit_headers(admission.decision))
        if is_whoami:
            body = self._whoami_body(admission, state.guard.limits_in_force(admission.record))
            headers += [_JSON, (b"content-length", str(len(body)).encode())]
        else:
            body = b""
            headers += _forward_auth_headers(admission.record)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_rejection(self, error: KeyRejected, send: Send) -> None:
        """A plain rejection (malformed, unknown, revoked...) is the same bytes every time: build
        its response once. Subclasses carry per-request state (`RateLimited` its headers)."""
        if type(error) is not KeyRejected:
            response = error_response(error)
            status, headers, body = response.status_code, response.raw_headers, response.body
        else:
            cached = self._rejections.get((error.code, error.message))
            if cached is None:
                response = error_response(error)
                cached = (response.status_code, response.raw_headers, bytes(response.body))
                self._rejections[(error.code, error.message)] = cached
            status, headers, body = cached
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _whoami_body(self, admission: Admission, policy: tuple[str, ...]) -> bytes:
        record = admission.record
        body = self._whoami_bodies.get((record, policy))
        if body is None:
            if len(self._whoami_bodies) >= _MAX_BODIES:
                self._whoami_bodies.clear()
            body = WhoAmI.of(record, policy).model_dump_json().encode()
            self._whoami_bodies[(record, policy)] = body
        return body


# Printable ASCII but `%`: what a header carries as it is; the rest is percent-encoded UTF-8.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def header_text(text: str) -> bytes:
    """A stored identity as a header value, reversibly: RFC 3986 percent-encoding of its UTF-8
    (`акме` -> `%D0%B0%D0%BA%D0%BC%D0%B5`, `urllib.parse.unquote` gives it back); ASCII
    identities without `%` pass unchanged, and no stored value can put a line break in a header."""
    return quote(text, safe=_HEADER_SAFE).encode("ascii")


def _required_scopes(scope: Scope, reads_query: bool) -> frozenset[str]:
    """`?scope=` counts on `/v1/auth` itself only: below it, path and query are the original
    request's (Envoy), so there only the header a gateway sets names the required scopes."""
    header = b",".join(value for name, value in scope["headers"] if name == _REQUIRED_HEADER)
    return required_scopes(scope["query_string"] if reads_query else b"", header)


def _forward_auth_headers(record: KeyRecord) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-gatekey-key-id", str(record.id).encode()),
        (b"x-gatekey-owner", header_text(record.owner or "")),
        (b"x-gatekey-scopes", header_text(",".join(record.scopes))),
        (b"content-length", b"0"),
    ]


_SCOPE_LIST: dict[str, Any] = {
    "type": "string",
    "maxLength": 1000,
    "examples": ["read", "read,write"],
}
_REQUIRED_SCOPE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "scope",
        "in": "query",
        "description": "a scope the key must hold; repeatable, or a comma-separated list",
        "schema": {"type": "array", "items": _SCOPE_LIST, "maxItems": 20},
        "style": "form",
        "explode": True,
    },
    {
        "name": "X-Gatekey-Required-Scopes",
        "in": "header",
        "description": "comma-separated scopes the key must hold, set by the gateway",
        "schema": _SCOPE_LIST,
    },
]


def document_fast_routes(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the fast routes to an OpenAPI document (they bypass FastAPI, so it cannot see them)."""
    key_auth: list[dict[str, list[str]]] = [{"ApiKeyHeader": []}, {"BearerKey": []}]
    problem = {"description": "problem+json with a stable `code`"}
    errors = {"401": problem, "403": problem, "429": problem, "503": problem}
    openapi.setdefault("components", {}).setdefault("securitySchemes", {}).update(
        {
            "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "BearerKey": {"type": "http", "scheme": "bearer"},
        }
    )
    openapi["components"].setdefault("schemas", {})["WhoAmI"] = WhoAmI.model_json_schema()
    whoami_ok = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WhoAmI"}}}
    }

    def auth(summary: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "tags": ["keys"],
            "summary": summary,
            "security": key_auth,
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "valid: X-Gatekey-Key-Id, X-Gatekey-Owner, X-Gatekey-Scopes"
                },
                "422": problem,
                **errors,
            },
        }

    original_path = {
        "name": "path",
        "in": "path",
        "required": True,
        "description": "the original request's path (Envoy ext_authz); not read",
        "schema": {"type": "string", "maxLength": 1000},
    }
    forward_auth = "Forward-auth target (nginx auth_request, Traefik forwardAuth); any method"
    openapi.setdefault("paths", {}).update(
        {
            "/v1/whoami": {
                "get": {
                    "tags": ["keys"],
                    "summary": "The calling key's identity, scopes and limit",
                    "security": key_auth,
                    "responses": {"200": {"description": "the key", **whoami_ok}, **errors},
                }
            },
            AUTH: {
                "get": auth(forward_auth, _REQUIRED_SCOPE_PARAMETERS),
                "post": auth(forward_auth, _REQUIRED_SCOPE_PARAMETERS),
            },
            AUTH_PREFIX + "{path}": {
                "get": auth(
                    "Forward-auth below /v1/auth (Envoy ext_authz); any method; scopes by header",
                    [original_path, _REQUIRED_SCOPE_PARAMETERS[1]],
                ),
            },
        }
    )
    return openapi
