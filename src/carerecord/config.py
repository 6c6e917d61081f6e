"""Settings, from (highest first) command-line flags, ``CARERECORD_*`` environment variables,
a config file (``CARERECORD_CONFIG``, TOML with the same keys, default ``carerecord.toml`` in the
working directory), and defaults. The default database is an SQLite file in the data directory,
so ``carerecord serve`` needs nothing installed."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "carerecord"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the optional TOML config file."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = Path(os.environ.get("CARERECORD_CONFIG", "carerecord.toml"))
        if not path.is_file():
            return {}
        with path.open("rb") as f:
            data = tomllib.load(f)
        return dict(data.get("carerecord", data))


class TrustedProvider(BaseModel):
    """An external OpenID Connect provider whose tokens the API accepts (NHS CIS2 for staff,
    NHS login for patients, or any provider). Configured, not coded: its issuer, the audience
    its tokens must carry, and its JWKS URL, which must also be on ``jwks_allow_list``."""

    issuer: str
    audience: str
    jwks_uri: str
    kind: str = "staff"  # staff | patient: how its users map to a Principal
    scope: str = "user/*.cruds"  # the most its tokens are granted (narrowed by their scope claim)
    role_claim: str = "selected_roleid"  # staff: the claim naming the selected PractitionerRole
    nhs_number_claim: str = "nhs_number"  # patients: the claim carrying the NHS number
    algorithms: list[str] = ["RS256", "RS384", "ES256", "ES384", "PS256"]


class Settings(BaseSettings):
    """All runtime settings of a carerecord server or command."""

    model_config = SettingsConfigDict(env_prefix="CARERECORD_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database: str | None = None  # SQLAlchemy URL; None means sqlite file in data_dir
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    base_url: str | None = None  # public base URL of the FHIR API; default http://host:port/fhir
    default_page_size: int = 50
    max_page_size: int = 1000
    # Limits per caller (api/limits.py): body size, Bundle entries, and a token bucket per
    # client id (requests per second, burst), shared by the workers of one `carerecord serve`
    # through rate_file (which serve creates and removes; unset: each process its own).
    max_request_bytes: int = 32 * 1024 * 1024
    max_bundle_entries: int = 10_000
    rate_per_second: float = 200.0
    rate_burst: int = 1000
    rate_file: Path | None = None
    validate_profiles: bool = True
    # Bulk export (services/export): jobs and their files live in <data_dir>/exports; an NDJSON
    # file is split past export_file_bytes; finished jobs are removed after the retention time;
    # each worker process runs at most export_workers jobs at once (the others wait, queued).
    export_file_bytes: int = 64 * 1024 * 1024
    export_retention_seconds: int = 24 * 3600
    export_workers: int = 2
    # Audit trail (issue 4): on always; off only to measure its cost (benchmarks/audit.py).
    audit: bool = True
    # The longest an audit batch waits for the requests in flight to reach their record before it
    # is committed (it goes as soon as they all have): one commit then serves them all. None: 5 ms
    # on PostgreSQL, 0 on SQLite (access/audit_writer.py; docs/performance.md, "Audit trail").
    audit_window_ms: float | None = None
    # Sign-in and tokens (access/): lifetimes, trusted OpenID Connect providers, and the only
    # URLs a JWKS may be fetched from (providers' and clients' jwks_uri/jku).
    access_token_seconds: int = 300
    refresh_token_seconds: int = 30 * 24 * 3600
    trusted_providers: list[TrustedProvider] = []
    jwks_allow_list: list[str] = []

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   env_settings: Any, dotenv_settings: Any,
                                   file_secret_settings: Any) -> tuple[Any, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    def database_url(self) -> str:
        """The SQLAlchemy URL of the store (creating the data directory for SQLite)."""
        if self.database:
            return self.database
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'carerecord.db'}"

    def fhir_base(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}/fhir").rstrip("/")

    def auth_base(self) -> str:
        """The issuer of this server's tokens: the FHIR base without its final ``/fhir``."""
        base = self.fhir_base()
        return base[: -len("/fhir")] if base.endswith("/fhir") else base
