"""Settings of the capture service."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sluiceway.settings import KafkaSettings, PostgresSettings


class CaptureTuning(BaseSettings):
    """How capture reads the source and produces to Kafka."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_CAPTURE_", frozen=True)

    fetch_rows: int = Field(
        10_000, ge=1, description="Rows fetched per round trip of the snapshot cursor."
    )
    flush_timeout_s: float = Field(
        60.0, gt=0, description="How long to wait for Kafka to acknowledge."
    )


@dataclass(frozen=True)
class CaptureSettings:
    """Everything capture needs, built once in main() and passed down."""

    kafka: KafkaSettings
    pg: PostgresSettings
    tuning: CaptureTuning
