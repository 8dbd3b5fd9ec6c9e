"""Worker sizing: workers × (pool size + overflow) must fit PostgreSQL's available connections."""

from __future__ import annotations

import pytest

from service.errors import InvalidInput
from service.workers.sizing import ConnectionBudget, plan_workers

# PostgreSQL's stock settings: max_connections 100, superuser_reserved_connections 3.
STOCK = ConnectionBudget(max_connections=100, reserved=3)


def test_available_is_max_connections_less_reserved() -> None:
    assert STOCK.available == 97
    assert ConnectionBudget(max_connections=500, reserved=13).available == 487


def test_default_is_cpu_count_when_it_fits() -> None:
    assert plan_workers(requested=None, cpu_count=2, per_worker=40, budget=STOCK) == 2


def test_default_is_capped_so_the_pools_fit() -> None:
    # 97 // 40 = 2 workers fit, whatever the CPU count.
    assert plan_workers(requested=None, cpu_count=16, per_worker=40, budget=STOCK) == 2
    assert plan_workers(requested=None, cpu_count=64, per_worker=10, budget=STOCK) == 9


def test_default_is_at_least_one_worker() -> None:
    assert plan_workers(requested=None, cpu_count=1, per_worker=97, budget=STOCK) == 1


def test_default_refused_when_not_even_one_worker_fits() -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_workers(requested=None, cpu_count=4, per_worker=98, budget=STOCK)
    assert caught.value.message == (
        "one worker needs 98 connections but PostgreSQL has only 97 available; "
        "lower DATABASE_POOL_SIZE / DATABASE_POOL_MAX_OVERFLOW"
    )


def test_explicit_count_that_fits_is_kept() -> None:
    assert plan_workers(requested=2, cpu_count=1, per_worker=40, budget=STOCK) == 2
    # Exactly filling the budget is allowed: 97 = 97.
    budget = ConnectionBudget(max_connections=100, reserved=3)
    assert plan_workers(requested=1, cpu_count=8, per_worker=97, budget=budget) == 1


def test_explicit_count_is_not_capped_to_cpu_count() -> None:
    assert plan_workers(requested=8, cpu_count=2, per_worker=10, budget=STOCK) == 8


def test_explicit_too_many_is_refused_naming_the_numbers() -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_workers(requested=3, cpu_count=8, per_worker=40, budget=STOCK)
    message = caught.value.message
    assert message == (
        "3 workers × 40 connections (DATABASE_POOL_SIZE + DATABASE_POOL_MAX_OVERFLOW) = 120 "
        "exceeds PostgreSQL's 97 available connections (max_connections 100 - 3 reserved); "
        "use at most 2 workers or a smaller pool"
    )
    assert "\n" not in message
    assert caught.value.code == "VALIDATION_ERROR"


def test_one_connection_over_is_refused() -> None:
    with pytest.raises(InvalidInput, match="= 98 exceeds"):
        plan_workers(requested=2, cpu_count=2, per_worker=49, budget=STOCK)


def test_behind_pgbouncer_the_request_or_the_cpu_count_runs() -> None:
    """PgBouncer queues clients for its own server pool: PostgreSQL's slots bound no worker."""
    assert plan_workers(requested=None, cpu_count=8, per_worker=40, budget=None) == 8
    assert plan_workers(requested=12, cpu_count=2, per_worker=40, budget=None) == 12
