"""Key format: length, prefix, alphabet, the CRC32 checksum, display prefix and stored hashes."""

from __future__ import annotations

import hashlib
import hmac
import string
import zlib

import pytest

from service.keys.format import BASE62, KeyFormat, checksum, generate_key, hash_key, is_well_formed

# Fixed samples keep the exhaustive mutation checks deterministic.
SAMPLE_BODY = "gk_0123456789abcdefghijABCDEFGHIJkl"
SAMPLE_KEY = "gk_0123456789abcdefghijABCDEFGHIJkl3ZeCFn"
SAMPLE_SHA256 = "00285930cab78ccb36e94bdbab33eb742ef1104c2587e1544703e98e678feee9"
SAMPLE_HMAC_PEPPER = "fb7e2115d8356a0720dae93ae265128aabcd1beafcf098604749a5afc7d896ab"
SAMPLES = [
    SAMPLE_KEY,
    "gk_" + "0" * 32 + checksum("gk_" + "0" * 32),
    "gk_" + "zZ9aA0" * 5 + "qQ" + checksum("gk_" + "zZ9aA0" * 5 + "qQ"),
]


def _decode_base62(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + BASE62.index(char)
    return value


def test_base62_alphabet_is_digits_and_ascii_letters() -> None:
    assert len(BASE62) == 62
    assert set(BASE62) == set(string.digits + string.ascii_letters)


def test_generated_key_has_prefix_length_and_alphabet() -> None:
    keys = [generate_key("gk") for _ in range(200)]
    for key in keys:
        assert len(key) == 41  # "gk_" + 32 random + 6 checksum
        assert key.startswith("gk_")
        assert set(key[3:]) <= set(BASE62)
        assert is_well_formed(key, "gk")
    assert len(set(keys)) == 200


def test_custom_prefix_is_used_and_enforced() -> None:
    fmt = KeyFormat("acme", None)
    key = fmt.generate()
    assert key.startswith("acme_")
    assert len(key) == 43
    assert fmt.is_well_formed(key)
    assert not KeyFormat("gk", None).is_well_formed(key)


def test_checksum_is_base62_crc32_of_the_body() -> None:
    assert checksum(SAMPLE_BODY) == "3ZeCFn"
    assert _decode_base62("3ZeCFn") == zlib.crc32(SAMPLE_BODY.encode())
    assert SAMPLE_BODY + checksum(SAMPLE_BODY) == SAMPLE_KEY
    assert is_well_formed(SAMPLE_KEY, "gk")


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_single_character_substitution_is_rejected(sample: str) -> None:
    accepted = []
    for position, original in enumerate(sample):
        for replacement in BASE62 + "_":
            if replacement != original:
                mutated = sample[:position] + replacement + sample[position + 1 :]
                if is_well_formed(mutated, "gk"):
                    accepted.append(mutated)
    assert accepted == []


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_adjacent_transposition_is_rejected(sample: str) -> None:
    swapped = [
        sample[:i] + sample[i + 1] + sample[i] + sample[i + 2 :]
        for i in range(len(sample) - 1)
        if sample[i] != sample[i + 1]
    ]
    assert swapped
    assert [key for key in swapped if is_well_formed(key, "gk")] == []


@pytest.mark.parametrize(
    ("label", "key"),
    [
        ("empty", ""),
        ("prefix only", "gk_"),
        ("one short", SAMPLE_KEY[:-1]),
        ("one long", SAMPLE_KEY + "a"),
        ("wrong prefix", "xx" + SAMPLE_KEY[2:]),
        ("no separator", "gk" + SAMPLE_KEY[3:] + "a"),
        ("upper-case prefix", "GK" + SAMPLE_KEY[2:]),
        ("dash in body", "gk_-" + SAMPLE_BODY[4:] + checksum("gk_-" + SAMPLE_BODY[4:])),
        (
            "non-ascii digit",
            "gk_\u0663" + SAMPLE_BODY[4:] + checksum("gk_\u0663" + SAMPLE_BODY[4:]),
        ),
        ("space", " " + SAMPLE_KEY[1:]),
        ("trailing newline", SAMPLE_KEY[:-1] + "\n"),
    ],
)
def test_malformed_keys_are_rejected(label: str, key: str) -> None:
    assert not is_well_formed(key, "gk"), label


def test_display_prefix_is_prefix_and_first_eight_random_characters() -> None:
    fmt = KeyFormat("gk", None)
    assert fmt.display_prefix(SAMPLE_KEY) == "gk_01234567"
    assert len(fmt.display_prefix(fmt.generate())) == 11
    assert KeyFormat("acme", None).display_prefix("acme_abcdefghXYZ") == "acme_abcdefgh"


def test_sha256_without_pepper() -> None:
    assert hash_key(SAMPLE_KEY, None) == SAMPLE_SHA256
    assert hashlib.sha256(SAMPLE_KEY.encode()).hexdigest() == SAMPLE_SHA256
    assert KeyFormat("gk", None).hash(SAMPLE_KEY) == SAMPLE_SHA256


def test_hmac_with_pepper_differs_from_sha256_and_is_stable() -> None:
    peppered = KeyFormat("gk", b"pepper")
    assert peppered.hash(SAMPLE_KEY) == SAMPLE_HMAC_PEPPER
    assert hmac.new(b"pepper", SAMPLE_KEY.encode(), "sha256").hexdigest() == SAMPLE_HMAC_PEPPER
    assert KeyFormat("gk", b"pepper").hash(SAMPLE_KEY) == SAMPLE_HMAC_PEPPER
    assert SAMPLE_HMAC_PEPPER != SAMPLE_SHA256
    assert KeyFormat("gk", b"other").hash(SAMPLE_KEY) not in {SAMPLE_HMAC_PEPPER, SAMPLE_SHA256}


def test_empty_pepper_means_plain_sha256() -> None:
    assert KeyFormat("gk", b"").hash(SAMPLE_KEY) == SAMPLE_SHA256


def test_hash_is_64_hex_characters_and_never_contains_the_key() -> None:
    for pepper in (None, b"pepper"):
        digest = KeyFormat("gk", pepper).hash(SAMPLE_KEY)
        assert len(digest) == 64
        assert set(digest) <= set("0123456789abcdef")
        assert SAMPLE_KEY[3:35] not in digest
