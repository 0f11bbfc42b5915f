"""Settings of the sink's completion webhook and its disk guard.

Kept apart from ``SinkSettings`` (same ``SLUICEWAY_SINK_`` prefix) so the two can evolve
independently; each class reads only its own fields from the environment.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from sluiceway.settings_base import SluicewaySettings

# Atlassian Data pipeline stops an export that would leave less than 5 GB free.
DEFAULT_MIN_FREE_BYTES = 5_000_000_000


class GuardSettings(SluicewaySettings):
    """Where the sink announces finished runs by HTTP, and how much disk it leaves free."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_SINK_", frozen=True)

    webhook_url: str | None = Field(
        None, description="POST each run's completion notice (JSON) here; None sends nothing."
    )
    webhook_token: SecretStr | None = Field(
        None, description="Sent as 'Authorization: Bearer <token>'; never logged."
    )
    webhook_max_attempts: int = Field(6, ge=1, description="Attempts before giving up.")
    webhook_deadline_s: float = Field(
        60.0, gt=0, description="Give up once this many seconds have passed since the first try."
    )
    webhook_backoff_s: float = Field(0.5, gt=0, description="Wait after the first failure.")
    webhook_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between tries.")
    webhook_timeout_s: float = Field(10.0, gt=0, description="Timeout of one request.")
    min_free_bytes: int = Field(
        DEFAULT_MIN_FREE_BYTES,
        ge=-1,
        description="Pause (and refuse to start) when a local destination would have less "
        "free space than this; -1 disables the guard.",
    )
    disk_check_interval_s: float = Field(
        5.0, gt=0, description="How often the running sink measures free space."
    )
    lag_interval_s: float = Field(5.0, gt=0, description="How often consumer lag is measured.")

    @field_validator("webhook_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        # urllib would also open file:// and ftp:// URLs; a webhook is HTTP(S) only.
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(  # the URL itself may hold credentials: name only its scheme
                f"webhook_url must be an http(s) URL with a host, not {parts.scheme or 'none'!r}"
            )
        return value.strip()
