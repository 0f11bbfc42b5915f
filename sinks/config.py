"""Settings of the sink stage.

Built once by the caller (CLI, tests) and passed down; nothing here reads the environment
at import time. Every field can be set through ``SLUICEWAY_SINK_<FIELD>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from sluiceway.common.settings_base import SluicewaySettings

Compression = Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"]


class SinkSettings(SluicewaySettings):
    """How the sink rolls a run's events into Parquet or CSV files."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_SINK_", frozen=True)

    max_rows: int = Field(
        3_500_000, ge=1, description="Row cap of one file (Enterprise Insights uses 3.5M)."
    )
    max_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="Cap on one file's encoded size in bytes."
    )
    max_age_s: float = Field(
        600.0, gt=0, description="A file open this many seconds is closed at the next check."
    )
    row_group_rows: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Rows buffered in memory before they are written as one row group.",
    )
    compression: Compression = Field("zstd", description="Parquet compression codec.")
    compression_level: int | None = Field(
        None, description="Codec level; None keeps the codec's default."
    )
    csv_escape_newlines: bool = Field(
        True,
        description=(
            "CSV runs: write each line break inside a value (CRLF, LF or CR) as "
            "csv_line_break_escape, as Atlassian Data pipeline does by default (its "
            "embedded.line.break.preserve=false); false keeps line breaks inside quoted fields. "
            "Backslashes are always written as they are."
        ),
    )
    csv_line_break_escape: str = Field(
        "\\n",
        min_length=1,
        description="What a line break inside a value becomes (Data pipeline's "
        "embedded.line.break.escape.char); default the two characters \\n.",
    )

    @field_validator("csv_line_break_escape")
    @classmethod
    def _escape_text(cls, value: str) -> str:
        if any(c in value for c in '\r\n"'):
            raise ValueError(f"{value!r} may not hold a line break or a double quote")
        return value

    poll_batch: int = Field(
        2_000,
        ge=1,
        description=(
            "Messages fetched per consume() call; a Parquet run decodes each call's events "
            "in one go, so larger batches spread its fixed cost (500: ~30% more CPU per event)."
        ),
    )
    fetch_queue_kbytes: int = Field(
        24_576,  # 32 MiB cost 15 MB more peak RSS than 24 (64: 30 more), for no more throughput
        ge=1024,
        description=(
            "Bound on the run-topic messages librdkafka prefetches (queued.max.messages.kbytes,"
            " which also caps fetch.max.bytes): the bulk of the sink's memory."
        ),
    )
    poll_timeout_s: float = Field(
        1.0,
        gt=0,
        description=(
            "How long the sink waits on an idle run topic for a first record; once one "
            "comes, it waits at most 0.1 s more for the rest of a batch."
        ),
    )
    member: str | None = Field(
        None,
        description=(
            "Static group membership id (group.instance.id), unique per sink worker, e.g. its "
            "pod name: a restarted sink gets its partitions back at once instead of after the "
            "session timeout. None: a dynamic member."
        ),
    )
    session_timeout_ms: int = Field(
        10_000,
        ge=6_000,
        description="How long a sink that stopped answering keeps its partitions.",
    )
    metrics_port: int | None = Field(
        None, description="Serve Prometheus metrics on this port; None serves nothing."
    )
    schema_dir: Path | None = Field(
        None, description="Directory of the .avsc schemas; None uses the schemas Sluiceway ships."
    )
