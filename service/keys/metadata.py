"""A key's metadata: the owner's JSON object, checked once for the CLI and the admin API."""

from __future__ import annotations

import json
import re
from typing import Any

from service.errors import InvalidInput

# Metadata travels with its record into every worker's cache and the Redis directory: small
# enough that a million keys still fit, large enough for a plan and a few ids.
MAX_METADATA_BYTES = 4096
# NUL as compact JSON writes it (`\u0000` behind an even number of backslashes): jsonb has no NUL.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def clean_metadata(metadata: object) -> dict[str, Any]:
    """A JSON object of at most `MAX_METADATA_BYTES` as compact UTF-8 JSON, holding nothing
    PostgreSQL's jsonb refuses (NUL, lone surrogates, NaN and infinities)."""
    if not isinstance(metadata, dict):
        raise InvalidInput(f"metadata must be a JSON object, not {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode())
    except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
        raise InvalidInput(f"metadata must be plain JSON: {error}") from None
    if _ESCAPED_NUL.search(text):
        raise InvalidInput("metadata must not contain NUL characters (\\u0000)")
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(
            f"metadata must be at most {MAX_METADATA_BYTES} bytes as compact JSON, not {size}"
        )
    return metadata
