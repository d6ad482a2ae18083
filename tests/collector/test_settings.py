"""Settings: tokens from the environment and a file, and one-line errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.settings import ConfigError, Role, database_driver_url, is_loopback, load_settings

GOOD = "x" * 20


def test_tokens_from_env_and_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"read: [{'r' * 20}]\nadmin:\n  - name: alice\n    token: {'a' * 20}\n")
    settings = load_settings(
        listen="127.0.0.1:9000",
        tokens_file=str(tokens),
        environ={"APIWARD_INGEST_TOKENS": f"{'i' * 20}, {'j' * 20}", "APIWARD_READ_TOKENS": ""},
    )
    assert (settings.host, settings.port) == ("127.0.0.1", 9000)
    assert sorted((t.role.value, t.name) for t in settings.tokens if t.role is not Role.INGEST) == [
        ("admin", "alice"), ("read", f"read-{__import__('hashlib').sha256(b'r' * 20).hexdigest()[:8]}"),
    ]
    assert len([t for t in settings.tokens if t.role is Role.INGEST]) == 2
    assert "i" * 20 not in repr(settings)  # secrets stay out of reprs (and so out of logs)
    assert Role.ADMIN.grants(Role.READ) and not Role.READ.grants(Role.ADMIN)
    assert not Role.INGEST.grants(Role.READ) and not Role.ADMIN.grants(Role.INGEST)


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({}, {}, "no tokens configured"),
        ({"insecure_dev": True, "listen": "0.0.0.0:8000"}, {}, "loopback"),
        ({"listen": "nohost"}, {"APIWARD_READ_TOKENS": GOOD}, "HOST:PORT"),
        ({"listen": "127.0.0.1:99999"}, {"APIWARD_READ_TOKENS": GOOD}, "HOST:PORT"),
        ({"database": "mysql://x"}, {"APIWARD_READ_TOKENS": GOOD}, "sqlite:// or postgresql://"),
        ({}, {"APIWARD_READ_TOKENS": "short"}, "at least 16 characters"),
        ({}, {"APIWARD_READ_TOKENS": GOOD, "APIWARD_ADMIN_TOKENS": GOOD}, "same token"),
        ({"tokens_file": "/nonexistent/tokens.yaml"}, {}, "cannot read tokens file"),
        ({"log_level": "loud"}, {"APIWARD_READ_TOKENS": GOOD}, "log level"),
    ],
)
def test_bad_settings_raise_one_line(kwargs: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env, **kwargs)  # type: ignore[arg-type]
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_tokens_file(tmp_path: Path) -> None:
    for content, message in (
        ("- just a list", "must hold a mapping"),
        ("superuser: [x]", "unknown role"),
        ("read: notalist", "must be a list"),
        ("read: [", "not valid YAML"),
    ):
        path = tmp_path / "t.yaml"
        path.write_text(content)
        with pytest.raises(ConfigError, match=message):
            load_settings(tokens_file=str(path), environ={})


def test_insecure_dev_on_loopback_needs_no_tokens() -> None:
    assert load_settings(insecure_dev=True, listen="127.0.0.1:0", environ={}).insecure_dev
    assert load_settings(insecure_dev=True, listen="[::1]:0", environ={}).host == "::1"
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and not is_loopback("10.0.0.1")


def test_database_urls() -> None:
    assert database_driver_url("sqlite:///a.db") == "sqlite+aiosqlite:///a.db"
    assert database_driver_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert database_driver_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    with pytest.raises(ConfigError) as err:
        database_driver_url("mysql://user:secret@host/db")
    assert "secret" not in str(err.value)
