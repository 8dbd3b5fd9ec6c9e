"""Schemathesis fuzzes every operation of the OpenAPI document in-process, with an admin key:
bad input gets a 4xx problem+json with a `code`, never a 5xx, a stack trace or a hang."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import hypothesis
import pytest
import redis.asyncio as aioredis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import content_type_conformance

from service.config import Settings
from tests.factories import PROBLEM_FIELDS, create_key, running_app, state_of

T = TypeVar("T")

MAX_EXAMPLES = 25
# Far above any honest answer (the pool gives up after 2 s with a 503): only a hang gets here.
REQUEST_TIMEOUT_S = 10.0
BASE_URL = "http://gatekey.test"
# The document's operations; a new endpoint must be added here, so it cannot escape the fuzzer.
OPERATIONS = [
    "GET /healthz",
    "GET /readyz",
    "POST /v1/keys/verify",
    "GET /v1/usage",
    "GET /v1/admin/keys",
    "POST /v1/admin/keys",
    "GET /v1/admin/keys/{key_id}",
    "PATCH /v1/admin/keys/{key_id}",
    "DELETE /v1/admin/keys/{key_id}",
    "POST /v1/admin/keys/{key_id}/rotate",
    "GET /v1/admin/audit",
    "GET /v1/admin/keys/{key_id}/usage",
    "GET /v1/admin/owners/{owner}/usage",
    "PUT /v1/admin/owners/{owner}/limits",
    "GET /v1/admin/owners/{owner}/limits",
    "GET /v1/whoami",
    "GET /v1/auth",
    "POST /v1/auth",
    "GET /v1/auth/{path}",
]
# No parameters and no body: nothing to get wrong, so no negative cases exist for these.
WITHOUT_INPUT = {"GET /healthz", "GET /readyz"}
CASES = [
    pytest.param(label, mode, id=f"{label} {mode}")
    for label in OPERATIONS
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or label not in WITHOUT_INPUT
]
KEY_HEADERS = {b"x-api-key", b"authorization"}
# What `as_strategy` generates: a case of an operation whose own type parameters do not matter here.
Case = schemathesis.Case[Any]


class LoopThread:
    """An event loop on a thread of its own. Hypothesis drives the test synchronously, so the app,
    its lifespan and every request live here, apart from pytest-asyncio's session loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fuzz-loop")

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = REQUEST_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)


@dataclass(frozen=True, slots=True)
class FuzzTarget:
    loop: LoopThread
    client: httpx.AsyncClient
    schema: schemathesis.BaseSchema
    admin_key: str


async def _forget_namespace(redis_url: str, namespace: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(f"{namespace}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def target(settings: Settings) -> Iterator[FuzzTarget]:
    """The app with its lifespan running on a `LoopThread`, its document, and an admin key."""
    namespace = f"gkfuzz-{uuid.uuid4().hex[:8]}"
    fuzz_settings = settings.model_copy(update={"redis_namespace": namespace})
    stack = AsyncExitStack()
    with LoopThread() as loop:
        app, client = loop.run(stack.enter_async_context(running_app(fuzz_settings)))
        try:
            issued = loop.run(
                create_key(
                    state_of(app).database,
                    fuzz_settings,
                    name="fuzz admin",
                    scopes=["admin"],
                    rate_limit="100000000/minute",
                )
            )
            schema = schemathesis.openapi.from_dict(app.openapi())
            yield FuzzTarget(loop, client, schema, issued.plaintext)
        finally:
            loop.run(stack.aclose(), timeout=30)
            loop.run(_forget_namespace(fuzz_settings.redis_url, namespace))


def _send(target: FuzzTarget, case: Case) -> httpx.Response:
    """Send the case as schemathesis would (requests prepares the bytes), with the admin key
    unless the case brings its own key header (whoami and auth document theirs: fuzzed keys)."""
    prepared = requests.Request(**case.as_transport_kwargs(base_url=BASE_URL)).prepare()
    # Generated values may leave ASCII: send them as latin-1, the octets an ASGI server passes on.
    headers = [(name.encode("latin-1"), _latin1(value)) for name, value in prepared.headers.items()]
    if not KEY_HEADERS & {name.lower() for name, _ in headers}:
        headers.append((b"x-api-key", target.admin_key.encode()))
    body = prepared.body
    assert body is None or isinstance(body, str | bytes), type(body)  # requests has encoded it
    request = target.client.request(
        str(prepared.method), str(prepared.url), headers=headers, content=body
    )
    try:
        return target.loop.run(request)
    except TimeoutError:
        pytest.fail(f"no answer within {REQUEST_TIMEOUT_S} s: {case.as_curl_command()}")
    except httpx.InvalidURL:
        # A URL over 64 KiB: httpx will not send it, and no HTTP server would take it (uvicorn
        # answers such a request line itself), so it is not a request the service can be sent.
        hypothesis.reject()
    except Exception as exc:  # the app raised: a 500 for a client; name the request that did it
        exc.add_note(f"request (plus the admin key): {case.as_curl_command()}")
        raise


def _latin1(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def _check(case: Case, response: httpx.Response) -> None:
    where = f"{response.status_code} {response.text[:500]}\n{case.as_curl_command()}"
    assert response.status_code < 500, where
    assert "Traceback" not in response.text, where
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", where
        body = response.json()
        assert set(body) >= PROBLEM_FIELDS, where
        assert body["status"] == response.status_code, where
        assert isinstance(body["code"], str), where
        assert body["code"], where
    case.validate_response(response, checks=[not_a_server_error, content_type_conformance])


def test_the_fuzzer_sees_every_operation(target: FuzzTarget) -> None:
    operations = []
    for result in target.schema.get_all_operations():
        assert not isinstance(result, Err), result.err()
        operations.append(result.ok())
    assert sorted(operation.label for operation in operations) == sorted(OPERATIONS)
    without_input = {
        operation.label
        for operation in operations
        if not any(operation.iter_parameters()) and not operation.body
    }
    assert without_input == WITHOUT_INPUT


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_fuzzed_requests_get_an_answer_never_a_server_error(
    target: FuzzTarget, label: str, mode: GenerationMode
) -> None:
    operation = target.schema.find_operation_by_label(label)
    assert operation is not None

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        # Generation speed on loaded CI cores is not what this test is about.
        suppress_health_check=[HealthCheck.too_slow],
        # No shrinking: a failure already names its request (curl in the message), and shrinking
        # a large generated body can take longer than the whole suite.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Case) -> None:
        _check(case, _send(target, case))

    fuzz()
