"""Settings of the capture service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.common.settings_base import SluicewaySettings


class CaptureTuning(SluicewaySettings):
    """How capture reads the source and produces to Kafka."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_CAPTURE_", frozen=True)

    slot: str = Field(
        "sluiceway", pattern=r"^[a-z0-9_]{1,63}$", description="Logical replication slot name."
    )
    plugin: Literal["pgoutput", "wal2json"] = Field(
        "pgoutput",
        description="Logical decoding output plugin: pgoutput is built into PostgreSQL 14 and "
        "later (no server extension) and reads the publication below; wal2json needs the "
        "extension installed on the server. An existing slot must have been created with it.",
    )
    publication: str = Field(
        "sluiceway",
        pattern=r"^[a-z0-9_]{1,63}$",
        description="Publication pgoutput reads. Created for the captured tables when missing; "
        "an existing one must publish inserts, updates and deletes of every captured table.",
    )
    chunk_rows: int = Field(10_000, ge=1, description="Rows per snapshot chunk (one PK range).")
    snapshot_copy: bool = Field(
        True,
        description="Read snapshot chunks with COPY into Arrow columns, for tables whose "
        "columns are all of scalar types (no arrays); false: every chunk through psycopg2's rows.",
    )
    snapshot_rate: float = Field(
        0,
        ge=0,
        description="Rows per second capture reads from the source at most, over every bulk "
        "read (the snapshot's chunks, COPY or row by row, and the rows of a tenant table added "
        "while streaming), so the source keeps serving its users; a query then reads at most "
        "one second's worth of rows. However low, the snapshot still advances (a row at a "
        "time). 0 = no limit.",
    )
    source_max_queries: int = Field(
        1,
        ge=1,
        description="Read queries capture runs on the source at the same time, at most, "
        "whatever `snapshot_workers` is (shown in pg_stat_activity with application_name "
        "`sluiceway-snapshot`); a snapshot worker's other statements (importing the "
        "snapshot, its rollback) take a slot too. The replication stream, heartbeats and "
        "catalog checks are not counted: each is one small statement at a time.",
    )
    snapshot_workers: int = Field(
        1,
        ge=1,
        description="Tables the snapshot reads at once, each on its own connection sharing "
        "the slot's exported snapshot; their queries share `source_max_queries`, while "
        "parsing and publishing overlap.",
    )
    heartbeat_s: float = Field(
        5.0, gt=0, description="How often a heartbeat is written so the slot advances when quiet."
    )
    feedback_s: float = Field(1.0, gt=0, description="How often the confirmed position is sent.")
    flush_timeout_s: float = Field(
        60.0, gt=0, description="How long to wait for Kafka to acknowledge."
    )
    discover_s: float = Field(
        10.0,
        gt=0,
        description="How often capture (pgoutput) looks for tables of schema-per-tenant "
        "entities that its publication lacks (a tenant's schema created while it runs) and "
        "adds each, with its rows. Until then the new table's changes wait, none is lost.",
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest backoff between reconnects.")
    metrics_port: int | None = Field(None, description="Prometheus metrics port on 127.0.0.1.")


@dataclass(frozen=True)
class CaptureSettings:
    """Everything capture needs, built once in main() and passed down."""

    kafka: KafkaSettings
    pg: PostgresSettings
    tuning: CaptureTuning
