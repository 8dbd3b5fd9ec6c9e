"""Settings: documented defaults, one-line errors naming the variable, environment and `.env`."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import (
    LogFormat,
    RateLimitBackend,
    RedisErrorPolicy,
    Settings,
    SettingsError,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable from the caller's environment and no `.env` from the checkout leaks in."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_equal_the_design_table() -> None:
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/gatekey"
    assert settings.database_pool_size == 30
    assert settings.database_pool_max_overflow == 10
    assert settings.database_pool_timeout == 2.0
    assert settings.database_pool_recycle == 1800
    assert settings.rate_limit_backend is RateLimitBackend.REDIS
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.rate_limit_default == "1000/minute"
    assert settings.rate_limit_on_redis_error is RedisErrorPolicy.LOCAL
    assert settings.web_concurrency is None
    assert settings.key_prefix == "gk"
    assert settings.key_pepper is None
    assert settings.log_level == "INFO"
    assert settings.log_format is LogFormat.CONSOLE


def test_operational_defaults_meet_the_contract() -> None:
    settings = Settings()
    # The contract: Redis calls time out in tens of milliseconds; a revoke is seen within 1 s.
    assert settings.redis_timeout == 0.05
    assert settings.key_cache_ttl == 0.5
    assert settings.usage_flush_interval == 2.0


def test_load_settings_applies_overrides() -> None:
    settings = load_settings(database_pool_size=5, rate_limit_backend="memory", key_pepper="s3cr3t")
    assert settings.database_pool_size == 5
    assert settings.rate_limit_backend is RateLimitBackend.MEMORY
    assert settings.key_pepper is not None
    assert settings.key_pepper.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(settings)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.database_pool_size = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("database_url", "mysql://localhost/gatekey"),
        ("database_url", "postgresql://postgres@127.0.0.1/gatekey"),
        ("database_pool_size", "abc"),
        ("database_pool_size", 0),
        ("database_pool_max_overflow", -1),
        ("database_pool_timeout", 0),
        ("database_pool_recycle", 0),
        ("rate_limit_backend", "memcached"),
        ("redis_url", "http://127.0.0.1:6379"),
        ("rate_limit_on_redis_error", "maybe"),
        ("redis_timeout", 0),
        ("web_concurrency", 0),
        ("key_prefix", "GK"),
        ("key_prefix", "g_k"),
        ("key_prefix", ""),
        ("key_cache_ttl", 61),
        ("key_cache_ttl", 0),
        ("usage_flush_interval", -1),
        ("log_level", "verbose"),
        ("log_format", "xml"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(field: str, value: object) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**{field: value})
    message = str(caught.value)
    assert message.startswith(f"invalid setting {field.upper()}: ")
    assert "\n" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize("value", ["100/week", "0/minute"])
def test_bad_rate_limit_default_is_a_settings_error(value: str) -> None:
    """A bad limit string is a settings error naming the variable, not an `InvalidInput`."""
    with pytest.raises(SettingsError) as caught:
        load_settings(rate_limit_default=value)
    assert str(caught.value).startswith("invalid setting RATE_LIMIT_DEFAULT: ")
    assert "\n" not in str(caught.value)


def test_several_bad_values_are_all_named_on_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(database_pool_size=0, log_format="xml")
    message = str(caught.value)
    assert "\n" not in message
    assert "DATABASE_POOL_SIZE: " in message
    assert "; LOG_FORMAT: " in message


def test_environment_is_read_and_marked_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_POOL_SIZE", "12")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("RATE_LIMIT_ON_REDIS_ERROR", "deny")
    settings = load_settings()
    assert settings.database_pool_size == 12
    assert settings.web_concurrency == 3
    assert settings.rate_limit_on_redis_error is RedisErrorPolicy.DENY
    assert settings.is_explicit("web_concurrency")
    assert not settings.is_explicit("database_pool_max_overflow")


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_POOL_SIZE", "lots")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith("invalid setting DATABASE_POOL_SIZE: ")
    assert "\n" not in str(caught.value)


def test_dotenv_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("DATABASE_POOL_SIZE=7\nKEY_PREFIX=acme\nUNRELATED=1\n")
    monkeypatch.setenv("KEY_PREFIX", "env")
    settings = load_settings()
    assert settings.database_pool_size == 7
    assert settings.key_prefix == "env"
    assert settings.is_explicit("database_pool_size")


def test_bad_dotenv_value_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RATE_LIMIT_BACKEND=sqlite\n")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith("invalid setting RATE_LIMIT_BACKEND: ")


def test_without_environment_nothing_is_explicit() -> None:
    settings = Settings()
    assert not settings.is_explicit("web_concurrency")
    assert not settings.is_explicit("database_pool_size")
