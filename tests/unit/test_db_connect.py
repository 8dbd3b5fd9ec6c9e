"""asyncpg connect arguments: direct to PostgreSQL, or behind PgBouncer's transaction pooling."""

from __future__ import annotations

from service.config import Settings
from service.db import connect_args


def test_pgbouncer_mode_names_every_statement_and_caches_none() -> None:
    """Behind transaction pooling, no statement may outlive its transaction or share a name."""
    direct = connect_args(Settings(), application_name="gatekey")
    assert direct == {"server_settings": {"application_name": "gatekey"}, "timeout": 5}
    pooled = connect_args(Settings(database_pgbouncer=True), application_name="gatekey")
    assert (pooled["statement_cache_size"], pooled["prepared_statement_cache_size"]) == (0, 0)
    name_of = pooled["prepared_statement_name_func"]
    assert callable(name_of)
    assert len({name_of() for _ in range(1000)}) == 1000
