"""Settings of the sink's completion webhook and its disk guard.

Kept apart from ``SinkSettings`` (same ``SLUICEWAY_SINK_`` prefix) so the two can evolve
independently; each class reads only its own fields from the environment.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from sluiceway.common.settings_base import SluicewaySettings

# Atlassian Data pipeline stops an export that would leave less than 5 GB free.
DEFAULT_MIN_FREE_BYTES = 5_000_000_000


class GuardSettings(SluicewaySettings):
    """Where the sink announces finished runs by HTTP, and how much disk it leaves free."""

    # hide_input_in_errors: a refused URL may hold credentials; settings_problem shows it masked
    model_config = SettingsConfigDict(
        env_prefix="SLUICEWAY_SINK_", frozen=True, hide_input_in_errors=True
    )

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
        try:
            port = parts.port  # parsed lazily: an unchecked bad port failed after a whole run
        except ValueError:
            port = 0
        if port is not None and not 1 <= port <= 65535:
            raise ValueError("webhook_url has an invalid port; expected a number from 1 to 65535")
        if parts.scheme == "http" and _carries_secret(parts.username, parts.password, parts.query):
            raise ValueError(
                "webhook_url carries credentials over plain http, where anyone on the way "
                "reads them; use https"
            )
        return value.strip()

    @field_validator("webhook_token")
    @classmethod
    def _over_https(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        url = info.data.get("webhook_url")
        if value is not None and url is not None and urlsplit(url).scheme == "http":
            raise ValueError(
                "would be sent in clear over the http webhook_url; use an https webhook_url"
            )
        return value


# Query parameters that, by their name, carry a secret (e.g. ?token=..., ?api_key=...).
_SECRET_PARAMS = ("token", "key", "secret", "password", "passwd", "sig", "auth", "credential")


def _carries_secret(user: str | None, password: str | None, query: str) -> bool:
    names = [pair.partition("=")[0].lower() for pair in query.split("&") if pair]
    return bool(user or password) or any(s in n for n in names for s in _SECRET_PARAMS)
