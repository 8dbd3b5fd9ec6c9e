"""Key format: `<prefix>_` + 32 random base62 characters + a 6-character base62 CRC32.

Pure functions, no I/O: a mistyped or forged key is rejected here, before any database or
Redis work.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib

from service.config import Settings

BASE62 = string.digits + string.ascii_letters
_BASE62_SET = frozenset(BASE62)
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6  # 62**6 > 2**32, so every CRC32 fits
DISPLAY_LENGTH = 8


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    return "".join(reversed(digits))


def checksum(body: str) -> str:
    """Base62 CRC32 of everything before the checksum."""
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate_key(prefix: str) -> str:
    """A new plaintext key; it is shown once and never stored."""
    random_part = "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    body = f"{prefix}_{random_part}"
    return body + checksum(body)


def is_well_formed(key: str, prefix: str) -> bool:
    """Prefix, length, alphabet and checksum all match."""
    head = prefix + "_"
    if len(key) != len(head) + RANDOM_LENGTH + CHECKSUM_LENGTH or not key.startswith(head):
        return False
    tail = key[len(head) :]
    if not _BASE62_SET.issuperset(tail):
        return False
    body = key[:-CHECKSUM_LENGTH]
    return hmac.compare_digest(checksum(body), key[-CHECKSUM_LENGTH:])


def display_prefix(key: str, prefix: str) -> str:
    """The part of a key safe to show and log: the prefix and the first random characters."""
    return key[: len(prefix) + 1 + DISPLAY_LENGTH]


def hash_key(key: str, pepper: bytes | None) -> str:
    """What is stored: SHA-256 of the key, or HMAC-SHA256 when a pepper is configured."""
    if pepper:
        return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(key.encode()).hexdigest()


class KeyFormat:
    """The key format as configured: prefix and optional pepper, read from settings once."""

    def __init__(self, prefix: str, pepper: bytes | None) -> None:
        self.prefix = prefix
        self._pepper = pepper

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyFormat:
        pepper = settings.key_pepper.get_secret_value().encode() if settings.key_pepper else None
        return cls(settings.key_prefix, pepper)

    def generate(self) -> str:
        return generate_key(self.prefix)

    def is_well_formed(self, key: str) -> bool:
        return is_well_formed(key, self.prefix)

    def hash(self, key: str) -> str:
        return hash_key(key, self._pepper)

    def display_prefix(self, key: str) -> str:
        return display_prefix(key, self.prefix)
