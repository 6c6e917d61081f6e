"""Settings come from flags, then CARERECORD_* variables, then the config file, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from carerecord.config import Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("CARERECORD_DATABASE", "CARERECORD_PORT", "CARERECORD_HOST", "CARERECORD_CONFIG",
                 "CARERECORD_DATA_DIR", "CARERECORD_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_default_database_is_an_sqlite_file_in_the_data_dir(clean_env: Path) -> None:
    s = Settings(data_dir=clean_env / "data")
    assert s.database_url() == f"sqlite:///{clean_env / 'data' / 'carerecord.db'}"
    assert (clean_env / "data").is_dir()


def test_config_file_is_read(clean_env: Path) -> None:
    (clean_env / "carerecord.toml").write_text('[carerecord]\nport = 9001\nhost = "0.0.0.0"\n')
    s = Settings()
    assert (s.port, s.host) == (9001, "0.0.0.0")


def test_environment_beats_config_file_and_flags_beat_both(clean_env: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "carerecord.toml").write_text("port = 9001\n")
    monkeypatch.setenv("CARERECORD_PORT", "9002")
    assert Settings().port == 9002
    assert Settings(port=9003).port == 9003


def test_config_file_can_be_named_by_variable(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = clean_env / "elsewhere.toml"
    path.write_text('database = "postgresql://u@h/db"\n')
    monkeypatch.setenv("CARERECORD_CONFIG", str(path))
    assert Settings().database_url() == "postgresql://u@h/db"


def test_fhir_base_defaults_to_host_and_port(clean_env: Path) -> None:
    assert Settings(host="127.0.0.1", port=8080).fhir_base() == "http://127.0.0.1:8080/fhir"
    assert Settings(base_url="https://gp.example.nhs.uk/fhir/").fhir_base() == "https://gp.example.nhs.uk/fhir"
