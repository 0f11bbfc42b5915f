"""Settings of the processor service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sluiceway.common.settings import KafkaSettings
from sluiceway.common.settings_base import SluicewaySettings


class ProcessorTuning(SluicewaySettings):
    """How the faust worker of a run batches and what it guarantees."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_PROCESSOR_", frozen=True)

    guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once", description="faust processing_guarantee."
    )
    poll_records: int = Field(
        10_000, ge=1, description="Records per consumer poll: the most one batch holds."
    )
    full_chunk: int = Field(
        100_000,
        ge=1,
        description="Offsets a full run reads per chunk, from the cut downwards: its first "
        "events go out after one chunk, and a chunk's records are held in memory.",
    )
    commit_interval_s: float = Field(
        1.0, gt=0, description="How often offsets/transactions commit."
    )
    metrics_port: int | None = Field(
        None, description="Prometheus metrics port on 127.0.0.1 (None: no endpoint)."
    )


@dataclass(frozen=True)
class ProcessorSettings:
    """Everything a processor worker needs, built once in main() and passed down."""

    kafka: KafkaSettings
    tuning: ProcessorTuning
