"""One Parquet file being written: its state, its buffer and its writer. I/O.

A file's stream is opened with its first row group, so a file that only buffers rows has
touched nothing yet. Its name is fixed by its partition and first offset, so a restart
that re-reads the same offsets writes the same object.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from sluiceway.lake import layout, storage
from sluiceway.lake.errors import LakeWriteError
from sluiceway.lake.manifest import FileRecord
from sluiceway.lake.storage import Lake
from sluiceway.sinks import sizing
from sluiceway.sinks.rotation import Caps, FileState, after_write
from sluiceway.sinks.rows import ColumnBuffer

log = logging.getLogger("sluiceway.sink")

# Footer metadata that lets a restarted sink tell which offsets a published file covers.
META_ETL_ID = "sluiceway.etl_id"
META_TABLE = "sluiceway.table"
META_PARTITION = "sluiceway.partition"
META_START = "sluiceway.start_offset"
META_END = "sluiceway.end_offset"
META_SCHEMA = "sluiceway.schema_fingerprint"
_OFFSET_WIDTH = 20  # metadata values are written padded so the footer bound is exact


@dataclass
class OpenFile:
    table: str
    partition: int
    start_offset: int
    relative: str
    schema: pa.Schema
    etl_id: str
    state: FileState
    pending: ColumnBuffer
    footer: int = 0  # bound on the footer of the row groups written so far
    end_offset: int = -1
    target: str | None = None
    stream: pa.NativeFile | None = None
    writer: pq.ParquetWriter | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def new_file(
    table: str,
    partition: int,
    start_offset: int,
    table_dir: str,
    schema: pa.Schema,
    schema_id: str,
    etl_id: str,
    caps: Caps,
    now: float,
) -> OpenFile:
    metadata = {
        META_ETL_ID: etl_id,
        META_TABLE: table,
        META_PARTITION: str(partition),
        META_START: f"{start_offset:0{_OFFSET_WIDTH}d}",
        META_END: "0" * _OFFSET_WIDTH,
        META_SCHEMA: schema_id,
    }
    footer = sizing.footer_base(schema, metadata)
    return OpenFile(
        table=table,
        partition=partition,
        start_offset=start_offset,
        relative=f"{table_dir}/{layout.part_name(partition, start_offset)}",
        schema=schema,
        etl_id=etl_id,
        state=FileState(caps=caps, opened_at=now, schema_id=schema_id, bytes=footer),
        pending=ColumnBuffer(schema),
        footer=footer,
        metadata=metadata,
    )


def _open_stream(lake: Lake, f: OpenFile, compression: str, level: int | None) -> None:
    storage.ensure_dir(lake, layout.parent(f.relative))
    f.target = storage.write_target(lake, f.relative)
    f.stream = lake.fs.open_output_stream(f.target)
    f.writer = pq.ParquetWriter(
        f.stream,
        f.schema,
        compression=None if compression == "none" else compression,
        compression_level=level,
    )


def write_row_group(
    lake: Lake,
    f: OpenFile,
    rows: pa.Table,
    last_offset: int,
    bound: sizing.RowGroupBound,
    compression: str,
    level: int | None = None,
) -> None:
    """Append ``rows`` as one row group and account for the bytes it really took."""
    try:
        if f.writer is None:
            _open_stream(lake, f, compression, level)
        assert f.writer is not None and f.stream is not None
        f.writer.write_table(rows, row_group_size=max(rows.num_rows, 1))
        written = f.stream.tell()
    except (OSError, pa.ArrowException) as exc:
        raise LakeWriteError(f"cannot write {lake.path(f.relative)}: {exc}") from exc
    f.footer += bound.footer
    f.end_offset = last_offset
    f.state = after_write(f.state, rows.num_rows, written, f.footer)


def publish(lake: Lake, f: OpenFile) -> FileRecord:
    """Close the file and make it durable under its final name."""
    if f.writer is None or f.stream is None or f.target is None:
        raise LakeWriteError(f"file {f.relative} has no rows to publish")
    f.metadata[META_END] = f"{f.end_offset:0{_OFFSET_WIDTH}d}"
    try:
        f.writer.add_key_value_metadata(f.metadata)
        f.writer.close()
        size = f.stream.tell()
        f.stream.close()
    except (OSError, pa.ArrowException) as exc:
        storage.discard(lake, f.target)
        raise LakeWriteError(f"cannot close {lake.path(f.relative)}: {exc}") from exc
    if size > f.state.caps.max_bytes and f.state.rows > 1:
        # the bounds in sizing.py are meant to make this impossible; say so loudly
        log.error("file %s is %d bytes, above its cap %d", f.relative, size, f.state.caps.max_bytes)
    storage.commit_target(lake, f.target, f.relative)
    return FileRecord(
        table=f.table,
        partition=f.partition,
        start_offset=f.start_offset,
        end_offset=f.end_offset,
        path=f.relative,
        rows=f.state.rows,
        bytes=size,
    )


def abort(lake: Lake, f: OpenFile) -> None:
    """Drop an unpublished file. An S3 stream completes its upload on close (there is no
    abort in pyarrow), so the object is deleted right after; recovery also deletes part
    files that lack our footer metadata."""
    with contextlib.suppress(OSError, pa.ArrowException):
        if f.writer is not None:
            f.writer.close()
        if f.stream is not None and not f.stream.closed:
            f.stream.close()
    if f.target is not None:
        with contextlib.suppress(OSError, pa.ArrowException):
            lake.fs.delete_file(f.target)
    f.writer = None
    f.stream = None


def read_record(lake: Lake, relative: str, size: int) -> FileRecord | None:
    """The record of a published file from its footer; None if it is not one of ours."""
    try:
        meta = pq.read_metadata(lake.path(relative), filesystem=lake.fs)
    except (OSError, pa.ArrowException):
        return None
    kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
    if META_END not in kv:
        return None
    return FileRecord(
        table=kv[META_TABLE],
        partition=int(kv[META_PARTITION]),
        start_offset=int(kv[META_START]),
        end_offset=int(kv[META_END]),
        path=relative,
        rows=meta.num_rows,
        bytes=size,
    )
