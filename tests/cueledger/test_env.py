"""Settings from the environment: good values parse, bad ones stop start-up with the variable's name."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from cueledger.env import env_bool, env_int, env_list, env_size, secret_key_from


@pytest.mark.parametrize("raw, expected", [("1", True), ("TRUE", True), ("on", True), ("0", False), ("no", False)])
def test_booleans(monkeypatch, raw, expected):
    monkeypatch.setenv("FLAG", raw)
    assert env_bool("FLAG", not expected) is expected


def test_a_bad_boolean_names_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe'"):
        env_bool("DEBUG", False)


@pytest.mark.parametrize(
    "raw, expected", [("5MB", 5_000_000), ("512KiB", 524_288), ("1048576", 1_048_576), ("2 mb", 2_000_000)]
)
def test_sizes(monkeypatch, raw, expected):
    monkeypatch.setenv("SIZE", raw)
    assert env_size("SIZE", 1) == expected


@pytest.mark.parametrize("raw", ["lots", "5XB", "0", "-3MB", "MB"])
def test_bad_sizes_are_refused(monkeypatch, raw):
    monkeypatch.setenv("SIZE", raw)
    with pytest.raises(ImproperlyConfigured, match="SIZE"):
        env_size("SIZE", 1)


def test_integers_have_a_floor(monkeypatch):
    monkeypatch.setenv("LIMIT", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("LIMIT", 5, minimum=1)
    monkeypatch.setenv("LIMIT", "ten")
    with pytest.raises(ImproperlyConfigured, match="whole number"):
        env_int("LIMIT", 5)


def test_lists_are_comma_separated(monkeypatch):
    monkeypatch.setenv("HOSTS", " a.example , b.example,, ")
    assert env_list("HOSTS", []) == ["a.example", "b.example"]


def test_the_secret_key_is_made_once_and_kept_private(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = secret_key_from(tmp_path)
    assert len(first) >= 50 and secret_key_from(tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_a_truncated_secret_key_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    (tmp_path / "secret_key").write_text("short\n")
    with pytest.raises(ImproperlyConfigured, match="shorter than 32"):
        secret_key_from(tmp_path)


def test_a_bad_database_url_stops_start_up(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            "DJANGO_SETTINGS_MODULE": "cueledger.settings",
            "DATABASE_URL": "nosuchdb://x/y",
            "CUELEDGER_VAR_DIR": str(tmp_path),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).parents[2]),
    )
    assert result.returncode != 0
    assert "DATABASE_URL='nosuchdb://x/y'" in result.stderr
