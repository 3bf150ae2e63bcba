"""Settings: no secret ships in the code; production insists on real ones."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from coursehub.app import check_production_settings
from coursehub.core.errors import ConfigurationError
from coursehub.core.settings import (
    DEVELOPMENT_SECRETS_FILE,
    Settings,
    get_settings,
    read_settings,
    with_installation_secrets,
)


def test_unset_secrets_are_generated_once_per_installation(tmp_path: Path) -> None:
    first = with_installation_secrets(Settings(_env_file=None, home=tmp_path))
    again = with_installation_secrets(Settings(_env_file=None, home=tmp_path))
    elsewhere = with_installation_secrets(Settings(_env_file=None, home=tmp_path / "other"))

    secret = first.secret_key.get_secret_value()
    assert len(secret) >= 48
    assert first.payment_webhook_secret.get_secret_value() not in ("", secret)
    assert again.secret_key.get_secret_value() == secret
    assert elsewhere.secret_key.get_secret_value() != secret
    mode = (tmp_path / DEVELOPMENT_SECRETS_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_a_secret_that_is_set_wins(tmp_path: Path) -> None:
    settings = with_installation_secrets(
        Settings(_env_file=None, home=tmp_path, secret_key="k" * 40)
    )

    assert settings.secret_key.get_secret_value() == "k" * 40
    assert settings.payment_webhook_secret.get_secret_value() != ""


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "COURSEHUB_SECRET_KEY"),
        ({"secret_key": "k" * 48}, "COURSEHUB_PAYMENT_WEBHOOK_SECRET"),
        ({"secret_key": "short", "payment_webhook_secret": "w" * 48}, "COURSEHUB_SECRET_KEY"),
        (
            {"secret_key": "k" * 48, "payment_webhook_secret": "w" * 48, "payment_simulator": True},
            "COURSEHUB_PAYMENT_SIMULATOR",
        ),
    ],
)
def test_production_refuses_missing_or_weak_secrets_and_the_simulator(
    fields: dict[str, object], says: str
) -> None:
    production = Settings(_env_file=None, environment="production", **fields)  # type: ignore[arg-type]

    with pytest.raises(ConfigurationError, match=says):
        check_production_settings(production)


def test_production_never_generates_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COURSEHUB_ENVIRONMENT", "production")
    monkeypatch.setenv("COURSEHUB_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert get_settings().secret_key.get_secret_value() == ""
    finally:
        get_settings.cache_clear()
    assert not (tmp_path / DEVELOPMENT_SECRETS_FILE).exists()


def test_a_bad_value_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COURSEHUB_ACCESS_TOKEN_MINUTES", "soon")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="COURSEHUB_ACCESS_TOKEN_MINUTES"):
            get_settings()
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COURSEHUB_ACCESS_TOKEN_MINUTES", "100000000000"),
        ("COURSEHUB_REFRESH_TOKEN_DAYS", "3000000"),
        ("COURSEHUB_PENDING_ORDER_TTL_MINUTES", "100000000000"),
        ("COURSEHUB_ORDER_EXPIRY_INTERVAL_SECONDS", "1e12"),
    ],
)
def test_a_duration_past_any_sane_bound_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Not taken as given: a token lifetime past datetime's range made every sign-in a 500
    (`now + lifetime` overflows), a TTL that large every expiry run."""
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match=variable):
            get_settings()
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("[1, 2]", "not a JSON object"),
        ('{"secret_key": null, "payment_webhook_secret": ""}', "secret_key is not a non-empty"),
        ('{"secret_key": "k", "payment_webhook_secret": "  "}', "payment_webhook_secret is not"),
        ('{"secret_key": "k"}', "payment_webhook_secret is missing"),
        ("{secret", "not JSON"),
    ],
)
def test_a_secrets_file_without_two_secrets_is_refused_naming_it(
    tmp_path: Path, content: str, says: str
) -> None:
    """Not taken as it is: null became the secret "None", "" no secret at all, and a
    list a TypeError's traceback."""
    path = tmp_path / DEVELOPMENT_SECRETS_FILE
    path.write_text(content)

    with pytest.raises(ConfigurationError, match=says) as refused:
        with_installation_secrets(Settings(_env_file=None, home=tmp_path))

    assert str(path) in str(refused.value)
    assert "delete the file" in str(refused.value)


def test_a_home_that_is_not_a_directory_is_one_configuration_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("")

    with pytest.raises(
        ConfigurationError, match=re.escape(f"{home} is not a directory") + ".*COURSEHUB_HOME"
    ):
        with_installation_secrets(Settings(_env_file=None, home=home))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only directory")
def test_a_read_only_home_is_one_configuration_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ConfigurationError, match=r"Permission denied.*COURSEHUB_HOME"):
            with_installation_secrets(Settings(_env_file=None, home=tmp_path))
    finally:
        tmp_path.chmod(0o700)


@pytest.fixture
def in_a_directory_without_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory, where `.env` is read from; DATABASE_URL left to it."""
    monkeypatch.chdir(tmp_path)
    for variable in ("DATABASE_URL", "COURSEHUB_DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("content", "byte", "offset"),
    [
        (b"DATABASE_URL=\xff\xfe\n", "0xff", 13),
        # Notepad's "Unicode": UTF-16, starting with its byte-order mark.
        ("DATABASE_URL=postgresql://shop@db/store\n".encode("utf-16"), "0xff", 0),
    ],
    ids=["latin-1", "utf-16"],
)
def test_a_dotenv_that_is_not_utf8_is_one_configuration_error_naming_it(
    in_a_directory_without_database_url: Path, content: bytes, byte: str, offset: int
) -> None:
    """python-dotenv's UnicodeDecodeError went through: a traceback on every command."""
    env_file = in_a_directory_without_database_url / ".env"
    env_file.write_bytes(content)

    with pytest.raises(ConfigurationError) as refused:
        read_settings()

    assert str(refused.value) == (
        f"cannot read {env_file}: it is not UTF-8 text (byte {byte} at offset {offset}); "
        "save it as UTF-8"
    )
