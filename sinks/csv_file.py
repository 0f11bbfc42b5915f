"""One CSV file being written, in Atlassian Data pipeline's format (docs/guide.md). I/O.

RFC 4180: UTF-8, a header row, CRLF after every record, every value quoted with ``"``
doubled inside; a null is an empty unquoted field, so readers can tell it from ``""``.
As Data pipeline does, a line break inside a value (CRLF, LF or CR) is written as the two
characters ``\\n`` by default (the escape text is a setting), or kept when line breaks are
preserved; every other character, backslashes included, is written as it is, so Spark's
and Hive's documented CSV options read the values back. Timestamps are ISO 8601 UTC with
microseconds and ``Z`` (without ``Z`` for timestamps without time zone), dates ISO, times
``HH:MM:SS.ffffff``, booleans ``true``/``false``, numbers as Python prints them (decimals
with every digit of their scale), bytes in base64, arrays as JSON arrays (docs/guide.md).

Each row is encoded before it is written, so a file's size is known exactly and the byte
cap is exact. CSV has no footer, so which offsets a published file covers is noted in a
small record under ``_runs/`` (``layout.part_record_path``) once the file is published.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from sluiceway.lake import layout, storage
from sluiceway.lake.errors import LakeWriteError
from sluiceway.lake.manifest import FileRecord
from sluiceway.lake.storage import Lake
from sluiceway.sinks.rotation import Caps, FileState
from sluiceway.sinks.rows import Row

log = logging.getLogger("sluiceway.sink")

Formatter = Callable[[Any], str]
_BUFFER = 1024 * 1024  # rows are small; one write per MiB instead of one per row
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_LINE_BREAK = "\\n"


@dataclass
class CsvFile:
    table: str
    partition: int
    start_offset: int
    relative: str
    schema: pa.Schema
    etl_id: str
    state: FileState
    line_break: str | None  # what a line break inside a value becomes; None keeps it
    formatters: tuple[Formatter, ...]
    end_offset: int = -1
    target: str | None = None
    stream: pa.NativeFile | None = None


def timestamp_text(value: datetime | int) -> str:
    """``2026-01-02T03:04:05.123456Z``; an int is microseconds since the epoch (Avro's)."""
    moment = _EPOCH + timedelta(microseconds=value) if isinstance(value, int) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # Avro timestamps are UTC by definition
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T"
        f"{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond:06d}Z"
    )


def date_text(value: date | int) -> str:
    """ISO date; an int is days since the epoch (Avro's ``date``)."""
    day = date(1970, 1, 1) + timedelta(days=value) if isinstance(value, int) else value
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


def _bool_text(value: Any) -> str:
    return "true" if value else "false"


def _bytes_text(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def local_timestamp_text(value: datetime | int) -> str:
    """A timestamp without time zone: ``2026-01-02T03:04:05.123456``, no ``Z`` (it names
    no instant); an int is microseconds since 1970-01-01 00:00 (Avro's)."""
    moment = (
        datetime(1970, 1, 1) + timedelta(microseconds=value) if isinstance(value, int) else value
    )
    return timestamp_text(moment.replace(tzinfo=UTC))[:-1]


def time_text(value: time | int) -> str:
    """``03:04:05.000007``; an int is microseconds since midnight (Avro's ``time-micros``)."""
    if isinstance(value, int):
        value = (datetime.min + timedelta(microseconds=value)).time()
    return value.isoformat(timespec="microseconds")


def decimal_text(value: Decimal) -> str:
    """Every digit of the scale, never an exponent: ``-0.000100``."""
    return format(value, "f")


def list_formatter(element: pa.DataType) -> Formatter:
    """An array as a JSON array: null elements as ``null``, booleans and integers as JSON
    literals, every other element as a JSON string of its own CSV text form."""
    inner = formatter(element)
    literal = pa.types.is_boolean(element) or pa.types.is_integer(element)

    def text(values: Any) -> str:
        items = [None if v is None else v if literal else inner(v) for v in values]
        return json.dumps(items, ensure_ascii=False, separators=(",", ":"))

    return text


def formatter(kind: pa.DataType) -> Formatter:
    """How one column's non-null values are written."""
    if pa.types.is_timestamp(kind):
        return timestamp_text if kind.tz is not None else local_timestamp_text
    if pa.types.is_date(kind):
        return date_text
    if pa.types.is_time(kind):
        return time_text
    if pa.types.is_boolean(kind):
        return _bool_text
    if pa.types.is_binary(kind):
        return _bytes_text
    if pa.types.is_floating(kind):
        return repr  # shortest text that reads back as the same double
    if pa.types.is_decimal(kind):
        return decimal_text
    if pa.types.is_list(kind):
        return list_formatter(kind.value_type)
    return str


def escape_line_breaks(text: str, line_break: str | None) -> str:
    """``text`` with each line break (CRLF, LF or CR) as ``line_break``; None keeps them."""
    if line_break is None:
        return text
    return text.replace("\r\n", line_break).replace("\n", line_break).replace("\r", line_break)


def quote(text: str, line_break: str | None) -> str:
    return '"' + escape_line_breaks(text, line_break).replace('"', '""') + '"'


def header(schema: pa.Schema, line_break: str | None = DEFAULT_LINE_BREAK) -> bytes:
    return (",".join(quote(n, line_break) for n in schema.names) + "\r\n").encode()


def encode_row(f: CsvFile, row: Row) -> bytes:
    """One record, CRLF included, exactly as it lands in the file."""
    fields = [
        "" if (value := row.get(name)) is None else quote(fmt(value), f.line_break)
        for name, fmt in zip(f.schema.names, f.formatters, strict=True)
    ]
    return (",".join(fields) + "\r\n").encode()


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
    line_break: str | None = DEFAULT_LINE_BREAK,
) -> CsvFile:
    start = len(header(schema, line_break))  # the header counts against the cap too
    return CsvFile(
        table=table,
        partition=partition,
        start_offset=start_offset,
        relative=f"{table_dir}/{layout.part_name(partition, start_offset, 'csv')}",
        schema=schema,
        etl_id=etl_id,
        state=FileState(caps=caps, opened_at=now, schema_id=schema_id, bytes=start),
        line_break=line_break,
        formatters=tuple(formatter(field.type) for field in schema),
    )


def _open_stream(lake: Lake, f: CsvFile) -> pa.NativeFile:
    storage.ensure_dir(lake, layout.parent(f.relative))
    f.target = storage.write_target(lake, f.relative)
    f.stream = lake.fs.open_output_stream(f.target, compression=None, buffer_size=_BUFFER)
    f.stream.write(header(f.schema, f.line_break))
    return f.stream


def write_row(lake: Lake, f: CsvFile, data: bytes, offset: int) -> None:
    """Append one encoded record; ``data`` is what ``encode_row`` returned."""
    try:
        stream = f.stream or _open_stream(lake, f)
        stream.write(data)
    except (OSError, pa.ArrowException) as exc:
        raise LakeWriteError(f"cannot write {lake.path(f.relative)}: {exc}") from exc
    f.end_offset = offset
    f.state = replace(f.state, rows=f.state.rows + 1, bytes=f.state.bytes + len(data))


def publish(lake: Lake, f: CsvFile) -> FileRecord:
    """Close the file, make it durable under its final name, then note its offsets."""
    if f.stream is None or f.target is None:
        raise LakeWriteError(f"file {f.relative} has no rows to publish")
    try:
        size = f.stream.tell()
        f.stream.close()
    except (OSError, pa.ArrowException) as exc:
        storage.discard(lake, f.target)
        raise LakeWriteError(f"cannot close {lake.path(f.relative)}: {exc}") from exc
    if size != f.state.bytes:
        # every byte is counted as it is encoded; a difference is a bug in this module
        log.error("file %s is %d bytes, counted %d", f.relative, size, f.state.bytes)
    storage.commit_target(lake, f.target, f.relative)
    record = FileRecord(
        table=f.table,
        partition=f.partition,
        start_offset=f.start_offset,
        end_offset=f.end_offset,
        path=f.relative,
        rows=f.state.rows,
        bytes=size,
    )
    # a file published without its record is deleted and rewritten by recovery
    note = {"etl_id": f.etl_id, **asdict(record)}
    path = layout.part_record_path(f.etl_id, f.table, layout.basename(f.relative))
    storage.write_bytes_atomic(lake, path, json.dumps(note, sort_keys=True).encode())
    return record


def abort(lake: Lake, f: CsvFile) -> None:
    """Drop an unpublished file (see ``parquet_file.abort`` about S3)."""
    with contextlib.suppress(OSError, pa.ArrowException):
        if f.stream is not None and not f.stream.closed:
            f.stream.close()
    if f.target is not None:
        with contextlib.suppress(OSError, pa.ArrowException):
            lake.fs.delete_file(f.target)
    f.stream = None


def read_record(lake: Lake, etl_id: str, table: str, relative: str, size: int) -> FileRecord | None:
    """The record of a published CSV file; None unless its note matches the file."""
    path = layout.part_record_path(etl_id, table, layout.basename(relative))
    try:
        note = json.loads(storage.read_bytes(lake, path) or b"null")
        record = FileRecord(**{k: note[k] for k in FileRecord.__dataclass_fields__})
    except (ValueError, TypeError, KeyError):
        return None
    if note.get("etl_id") != etl_id or record.path != relative or record.bytes != size:
        return None
    return record


def forget(lake: Lake, etl_id: str, table: str, relative: str) -> None:
    """Delete a CSV file's note, so a rewritten file is never matched with a stale one."""
    path = lake.path(layout.part_record_path(etl_id, table, layout.basename(relative)))
    with contextlib.suppress(OSError, FileNotFoundError):
        lake.fs.delete_file(path)
