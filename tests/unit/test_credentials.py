"""Where a request's key is read from: one key, the same key twice, or two different ones."""

from __future__ import annotations

import pytest

from service.api.credentials import client_address, presented_key
from service.errors import ConflictingCredentials, KeyRejected
from service.results import KeyCheckResult


def test_the_key_is_read_from_x_api_key_or_bearer() -> None:
    assert presented_key([(b"x-api-key", b"gk_a")]) == "gk_a"
    assert presented_key([(b"authorization", b"Bearer gk_a")]) == "gk_a"
    assert presented_key([(b"authorization", b"bearer  gk_a ")]) == "gk_a"


def test_the_same_key_twice_is_one_key() -> None:
    headers = [(b"x-api-key", b"gk_a"), (b"authorization", b"Bearer gk_a"), (b"x-api-key", b"gk_a")]
    assert presented_key(headers) == "gk_a"


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-api-key", b"gk_a"), (b"authorization", b"Bearer gk_b")],
        [(b"x-api-key", b"gk_a"), (b"x-api-key", b"gk_b")],
        [(b"authorization", b"Bearer gk_a"), (b"authorization", b"Bearer gk_b")],
    ],
    ids=["header and bearer", "two headers", "two bearers"],
)
def test_two_different_keys_are_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ConflictingCredentials) as caught:
        presented_key(headers)
    assert caught.value.code == "CONFLICTING_CREDENTIALS"


@pytest.mark.parametrize(
    "headers",
    [[], [(b"x-api-key", b" ")], [(b"authorization", b"Basic dXNlcjpwdw==")]],
    ids=["none", "blank", "basic"],
)
def test_no_key_is_missing_key(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(KeyRejected) as caught:
        presented_key(headers)
    assert caught.value.code is KeyCheckResult.MISSING_KEY


def test_client_address_is_the_scope_client() -> None:
    assert client_address({"client": ("10.1.2.3", 5555)}) == "10.1.2.3"
    assert client_address({"client": None}) is None
    assert client_address({}) is None
