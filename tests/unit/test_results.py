"""Key-check results are a public contract: bodies, metric labels and reports spell them so."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, generate_latest

from service.keys.schemas import VerifyResult
from service.metrics.registry import Metrics, label_incrementer
from service.results import KeyCheckResult

SPELLINGS = [
    "VALID",
    "MALFORMED",
    "NOT_FOUND",
    "REVOKED",
    "EXPIRED",
    "DISABLED",
    "RATE_LIMITED",
    "USAGE_EXCEEDED",
    "FORBIDDEN",
    "RATE_LIMITER_UNAVAILABLE",
    "MISSING_KEY",
]


def test_each_result_is_its_plain_code() -> None:
    assert [str(result) for result in KeyCheckResult] == SPELLINGS
    assert json.dumps(list(KeyCheckResult)) == json.dumps(SPELLINGS)
    body = VerifyResult(valid=False, code=KeyCheckResult.RATE_LIMITED).model_dump_json()
    assert '"code":"RATE_LIMITED"' in body


def test_every_counted_result_is_a_labelled_series_from_the_start() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    label_incrementer(metrics.key_verifications)(KeyCheckResult.REVOKED)
    exposition = generate_latest(registry).decode()
    series = [
        line.split(" ")
        for line in exposition.splitlines()
        if line.startswith("gatekey_key_verifications_total{")
    ]
    counted = [code for code in SPELLINGS if code != "MISSING_KEY"]
    assert series == [
        [
            f'gatekey_key_verifications_total{{result="{code}"}}',
            "1.0" if code == "REVOKED" else "0.0",
        ]
        for code in counted
    ]
