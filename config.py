"""Settings: every environment variable the service reads, typed, with its default."""
from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

INSTANCE_DIR = Path(__file__).resolve().parent / "instance"


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The service configuration; field names are the environment variable names."""

    DATABASE_URL: str = f"sqlite:///{INSTANCE_DIR / 'heartbeat.db'}"
    MONITOR_ENABLED: bool = True
    MONITOR_INTERVAL_SECONDS: float = 2.0
    SPOOL_DIR: str = str(INSTANCE_DIR / "spool")
    SMTP_URL: str = ""
    SMTP_FROM: str = "heartbeat-monitor@localhost"
    SMTP_TIMEOUT_SECONDS: float = 10.0
    # CA certificates to verify the SMTP server's with (STARTTLS, smtps://); the system's if unset.
    SMTP_CA_FILE: str = ""
    SECRET_KEY: str = ""
    SENTRY_DSN: str = ""
    LOG_FORMAT: str = "json"
    LOG_LEVEL: str = "INFO"
    BREAKER_FAILURE_THRESHOLD: int = 5
    BREAKER_RECOVERY_SECONDS: float = 30.0
    ALERT_MAX_AGE_SECONDS: int = 86400
    ALERT_TIMEOUT_SECONDS: float = 10.0
    ALERT_CONCURRENCY_PER_KIND: int = 8
    ALERT_CONCURRENCY_PER_CHANNEL: int = 2
    PING_RATE_LIMIT: str = "60/minute"
    PING_CLIENT_RATE_LIMIT: str = "6000/minute"
    API_RATE_LIMIT: str = "1200/minute"
    LOGIN_RATE_LIMIT: str = "10/minute"
    RATE_LIMIT_STORAGE_URL: str = "memory://"
    MAX_BODY_BYTES: int = 1024 * 1024
    ALLOW_PRIVATE_WEBHOOK_TARGETS: bool = False
    TRUSTED_PROXY_COUNT: int = 0
    PUBLIC_BASE_URL: str = ""
    DB_CONNECT_TIMEOUT_SECONDS: int = 2
    DB_IO_TIMEOUT_SECONDS: float = 3.0
    DB_RETRY_SECONDS: float = 1.0
    INGEST_TIMEOUT_SECONDS: float = 0.8
    INGEST_BATCH_WINDOW_SECONDS: float = 0.001
    SPOOL_MAX_BYTES: int = 512 * 1024 * 1024
    # 0: three monitor intervals (SPEC §8).
    OUTAGE_GAP_SECONDS: float = 0.0
    ERROR_RETENTION_DAYS: int = 30
    HEARTBEAT_RETENTION_DAYS: int = 30
    ERROR_RATE_THRESHOLD: float = 0.05
    ERROR_RATE_MIN_REQUESTS: int = 20
    ERROR_RATE_WINDOW_SECONDS: int = 300
    ERROR_RATE_COOLDOWN_SECONDS: int = 1800
    PROMETHEUS_MULTIPROC_DIR: str = ""
    DASHBOARD_REFRESH_SECONDS: int = 10
    # Read the time from this file instead of the system clock (drills and tests only).
    CLOCK_FILE: str = ""

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from the environment, then apply explicit overrides."""
        environ = os.environ if environ is None else environ
        overrides = dict(overrides or {})
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in overrides:
                raw = overrides.pop(field.name)
            elif field.name in environ and environ[field.name] != "":
                raw = environ[field.name]
            else:
                continue
            values[field.name] = _coerce(field.type, raw)
        settings = cls(**values)
        if not settings.SECRET_KEY:
            settings = dataclasses.replace(settings, SECRET_KEY=_instance_secret_key())
        return settings

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL with the psycopg2 driver named (SQLAlchemy 2.1 defaults to psycopg 3)."""
        for scheme in ("postgresql://", "postgres://"):
            if self.DATABASE_URL.startswith(scheme):
                return "postgresql+psycopg2://" + self.DATABASE_URL[len(scheme):]
        return self.DATABASE_URL

    @property
    def outage_gap_seconds(self) -> float:
        """A silence of the service longer than this is an outage gap (SPEC §6.3, §8)."""
        return self.OUTAGE_GAP_SECONDS or 3 * self.MONITOR_INTERVAL_SECONDS

    @property
    def is_sqlite(self) -> bool:
        return self.DATABASE_URL.startswith("sqlite")


def _coerce(type_name: Any, raw: Any) -> Any:
    name = type_name if isinstance(type_name, str) else type_name.__name__
    if name == "bool":
        return _to_bool(raw)
    if name == "int":
        return int(raw)
    if name == "float":
        return float(raw)
    return str(raw)


def _instance_secret_key() -> str:
    """Read the generated secret key from the instance folder, creating it once."""
    path = INSTANCE_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker won the race
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key
