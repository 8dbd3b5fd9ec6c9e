"""Domain errors: a stable `code` and a message, no HTTP status (the API and CLI map them)."""

from __future__ import annotations


class GatekeyError(Exception):
    """Base of every error the service raises on purpose."""

    code = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(GatekeyError):
    code = "VALIDATION_ERROR"


class NotFound(GatekeyError):
    code = "NOT_FOUND"


class DatabaseUnavailable(GatekeyError):
    """The database did not answer, or no pooled connection freed up in time."""

    code = "DATABASE_UNAVAILABLE"


class KeyRejected(GatekeyError):
    """A presented key failed verification; `code` is one of DESIGN.md's check results."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Forbidden(KeyRejected):
    def __init__(self, message: str) -> None:
        super().__init__("FORBIDDEN", message)
