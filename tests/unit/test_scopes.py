"""Scope names and the required scopes of a forward-auth request (pure)."""

from __future__ import annotations

import pytest

from service.errors import InvalidInput
from service.keys.scopes import grants_admin, required_scopes


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [
        (b"", b"", set()),
        (b"scope=read", b"", {"read"}),
        (b"scope=read&scope=write", b"", {"read", "write"}),
        (b"scope=read,write", b"", {"read", "write"}),
        (b"scope=read%2Cwrite", b"", {"read", "write"}),
        (b"scope=read&other=admin", b"write", {"read", "write"}),
        (b"", b" read , write ,", {"read", "write"}),
        (b"scope=&scope=,", b"", set()),
        (b"scopes=admin", b"", set()),
        (b"scope=billing:read", b"a.b-c_d", {"billing:read", "a.b-c_d"}),
    ],
)
def test_required_scopes_are_the_union_of_query_and_header(
    query: bytes, header: bytes, expected: set[str]
) -> None:
    assert required_scopes(query, header) == expected


@pytest.mark.parametrize(
    ("query", "header"),
    [
        (b"scope=Read", b""),
        (b"scope=1read", b""),
        (b"scope=no%20space", b""),
        (b"", "é".encode("latin-1")),
        (b"scope=" + b"a" * 65, b""),
        (b"scope=" + b",".join(b"s%d" % i for i in range(21)), b""),
    ],
)
def test_a_bad_requirement_is_invalid_input(query: bytes, header: bytes) -> None:
    with pytest.raises(InvalidInput):
        required_scopes(query, header)


def test_twenty_scopes_are_allowed() -> None:
    assert len(required_scopes(b"scope=" + b",".join(b"s%d" % i for i in range(20)), b"")) == 20


@pytest.mark.parametrize(
    ("scopes", "grants"),
    [
        ((), False),
        (("read", "write"), False),
        (("admin",), True),
        (("read", "admin:grant"), True),
        (("admin:keys",), False),
    ],
)
def test_admin_scopes(scopes: tuple[str, ...], grants: bool) -> None:
    assert grants_admin(scopes) is grants
