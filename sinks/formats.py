"""The file formats a sink writes, behind one small protocol; a run names its format once.

A format opens a run's part files, takes rows into them, and publishes, aborts or reads
back a published file. Rotation (``sinks/rotation.py``) and routing (``sinks/writer.py``)
are the same for every format; only how rows reach the file differs:

- Parquet buffers rows until a row group is full, then writes as many row groups as the
  caps allow (``RunWriter.write_row_groups``), and takes rows decoded together (``batches``).
- CSV encodes each row on arrival, so its exact size is known and the file is published
  before a row that would break a cap.

The names come from ``sluiceway.common.runs.FORMATS`` (what a run spec may ask for); every
name there must have a format here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

import pyarrow as pa

from sluiceway.common.runs import FORMATS
from sluiceway.lake.errors import RunStateError
from sluiceway.lake.manifest import FileRecord
from sluiceway.lake.storage import Lake
from sluiceway.sinks import csv_file, parquet_file
from sluiceway.sinks.csv_file import CsvFile
from sluiceway.sinks.parquet_file import OpenFile
from sluiceway.sinks.rotation import Incoming, decide, overflows_alone
from sluiceway.sinks.rows import Row

if TYPE_CHECKING:
    from sluiceway.sinks.writer import RunWriter

PartFile = OpenFile | CsvFile


class Format(Protocol):
    name: ClassVar[str]
    extension: ClassVar[str]  # of the part files' names
    batches: ClassVar[bool]  # whether rows may come as Arrow tables (RunWriter.add_table)

    def open(
        self, writer: RunWriter, table: str, partition: int, offset: int, schema: pa.Schema,
        schema_id: str, now: float,
    ) -> PartFile:  # fmt: skip
        """A new part file of ``table`` starting at ``offset``; nothing is written yet."""

    def add(self, writer: RunWriter, f: PartFile, row: Row, offset: int, now: float) -> int:
        """Take one row; returns how many files were published meanwhile."""

    def flush(self, writer: RunWriter, f: PartFile, now: float) -> int:
        """Write what the file buffers; returns how many files were published meanwhile."""

    def publish(self, lake: Lake, f: PartFile) -> FileRecord:
        """Close the file and make it durable under its final name."""

    def abort(self, lake: Lake, f: PartFile) -> None:
        """Drop an unpublished file."""

    def read_record(
        self, lake: Lake, etl_id: str, table: str, relative: str, size: int
    ) -> FileRecord | None:
        """The record of a published file, None when it is not one of ours (torn)."""

    def forget(self, lake: Lake, etl_id: str, table: str, relative: str) -> None:
        """Whatever besides the file a published file left (deleted with the file)."""


class Parquet:
    name: ClassVar[str] = "parquet"
    extension: ClassVar[str] = "parquet"
    batches: ClassVar[bool] = True

    def open(
        self, writer: RunWriter, table: str, partition: int, offset: int, schema: pa.Schema,
        schema_id: str, now: float,
    ) -> PartFile:  # fmt: skip
        return parquet_file.new_file(
            table, partition, offset, writer.table_dirs[table], schema, schema_id,
            writer.etl_id, writer.caps, now,
        )  # fmt: skip

    def add(self, writer: RunWriter, f: PartFile, row: Row, offset: int, now: float) -> int:
        f = as_parquet(f)
        f.pending.append(row, offset)
        if len(f.pending) >= writer.settings.row_group_rows:
            return self.flush(writer, f, now)
        return 0

    def flush(self, writer: RunWriter, f: PartFile, now: float) -> int:
        f = as_parquet(f)
        if not len(f.pending):
            return 0
        rows, offsets = f.pending.drain()
        return writer.write_row_groups(f, rows, offsets, now)

    def publish(self, lake: Lake, f: PartFile) -> FileRecord:
        return parquet_file.publish(lake, as_parquet(f))

    def abort(self, lake: Lake, f: PartFile) -> None:
        parquet_file.abort(lake, as_parquet(f))

    def read_record(
        self, lake: Lake, etl_id: str, table: str, relative: str, size: int
    ) -> FileRecord | None:
        return parquet_file.read_record(lake, relative, size)  # the footer names its run

    def forget(self, lake: Lake, etl_id: str, table: str, relative: str) -> None:
        return None  # its footer is all it has


class Csv:
    name: ClassVar[str] = "csv"
    extension: ClassVar[str] = "csv"
    batches: ClassVar[bool] = False  # rows are encoded one by one anyway

    def open(
        self, writer: RunWriter, table: str, partition: int, offset: int, schema: pa.Schema,
        schema_id: str, now: float,
    ) -> PartFile:  # fmt: skip
        keep = writer.csv_columns.get(table)
        if keep is not None:  # the Data pipeline layout writes exactly these columns
            schema = pa.schema([schema.field(n) for n in keep if n in schema.names])
        settings = writer.settings
        line_break = settings.csv_line_break_escape if settings.csv_escape_newlines else None
        return csv_file.new_file(
            table, partition, offset, writer.table_dirs[table], schema, schema_id,
            writer.etl_id, writer.caps, now, line_break,
        )  # fmt: skip

    def add(self, writer: RunWriter, f: PartFile, row: Row, offset: int, now: float) -> int:
        f = _csv(f)
        data = csv_file.encode_row(f, row)
        published = 0
        reason = decide(f.state, Incoming(1, len(data), f.state.schema_id), now)
        if reason is not None:
            published += writer.publish(f, reason)
            f = _csv(writer.restart(f, offset, now))
        csv_file.write_row(writer.lake, f, data, offset)
        if overflows_alone(f.state):
            published += writer.publish(f, writer.oversize(f))
        return published

    def flush(self, writer: RunWriter, f: PartFile, now: float) -> int:
        return 0  # every row is written as it comes

    def publish(self, lake: Lake, f: PartFile) -> FileRecord:
        return csv_file.publish(lake, _csv(f))

    def abort(self, lake: Lake, f: PartFile) -> None:
        csv_file.abort(lake, _csv(f))

    def read_record(
        self, lake: Lake, etl_id: str, table: str, relative: str, size: int
    ) -> FileRecord | None:
        return csv_file.read_record(lake, etl_id, table, relative, size)

    def forget(self, lake: Lake, etl_id: str, table: str, relative: str) -> None:
        csv_file.forget(lake, etl_id, table, relative)


def as_parquet(f: PartFile) -> OpenFile:
    if not isinstance(f, OpenFile):  # a run has one format: a bug, not bad input
        raise TypeError(f"{f.relative} is not a Parquet file")
    return f


def _csv(f: PartFile) -> CsvFile:
    if not isinstance(f, CsvFile):
        raise TypeError(f"{f.relative} is not a CSV file")
    return f


_IMPLEMENTATIONS: dict[str, Format] = {f.name: f for f in (Parquet(), Csv())}
# KeyError at import when common.runs names a format no implementation writes
REGISTRY: dict[str, Format] = {name: _IMPLEMENTATIONS[name] for name in FORMATS}


def named(name: str, etl_id: str) -> Format:
    """The format run ``etl_id`` asks for; RunStateError naming it when there is none."""
    found = REGISTRY.get(name)
    if found is None:
        raise RunStateError(
            f"run {etl_id} asks for format {name!r}; expected one of {', '.join(REGISTRY)}"
        )
    return found


def by_extension(name: str) -> Format:
    """The format of a part file (a name ``layout.parse_part_name`` accepts)."""
    extension = name.rpartition(".")[2]
    found = next((f for f in REGISTRY.values() if f.extension == extension), None)
    if found is None:
        raise RunStateError(f"{name!r} is not a part file of {', '.join(REGISTRY)}")
    return found
