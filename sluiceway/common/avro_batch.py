"""Decoding many run-topic values of one writer schema at once, straight to Arrow. Pure.

A run topic holds one Avro single-object encoded event per message. Decoding them one at
a time with fastavro and building Python rows costs ~25 us per event; the bodies of
values that share a fingerprint, concatenated, are a valid data block of an Avro object
container file, which polars decodes in native code at ~1.5 us per event.

Concatenated bodies carry no per-record length, so a corrupt body could shift every
record after it. The decoded rows are therefore checked against the messages (count, and
each row's tenant and id against its ``<tenant_id>/<entity_id>`` key); on any doubt
``decode`` returns None and the caller decodes message by message with fastavro, which
stays the source of truth and dead-letters the bad message alone.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa
from polars.exceptions import PanicException

from sluiceway.common.codec import HEADER_LEN, EventSchema, plain_schema

# Avro types polars' Avro reader decodes exactly: every type docs/types.md maps a column to,
# and arrays of them (tests/unit/test_sink_batch_types.py holds the rows to fastavro's).
# Left out, because polars 2.1 panics on them (printing a backtrace each time): Avro enums
# anywhere but as a field of the envelope itself (capture writes a PostgreSQL enum as a
# string, so only other producers' schemas have them) and decimals wider than 38 digits
# (numeric(39..76, s)).
_DECODABLE = frozenset({
    "long", "int", "string", "boolean", "double", "float", "bytes", "timestamp-micros",
    "timestamp-millis", "local-timestamp-micros", "date", "time-micros", "uuid", "decimal",
    "record",
})  # fmt: skip
MAX_DECIMAL_PRECISION = 38

_OCF_MAGIC = b"Obj\x01"
# Each value's single-object header, read as the first field of the container's records:
# the values then join into a block as they are, with no copy of each body cut off its
# header (that copy was a tenth of a batch's decoding), and the header of every value is
# checked in one comparison of a column instead of one slice per value.
_HEADER_FIELD = "_sluiceway_single_object_header"
_HEADER_TYPE = {"type": "fixed", "name": "sluiceway_single_object_header", "size": HEADER_LEN}
_SYNC = b"sluiceway-block!"  # any 16 bytes: a single block never needs to resync
assert len(_SYNC) == 16


def decodable(avro_type: Any) -> bool:
    """Whether values of ``avro_type`` (a field type, or a record nested in the envelope,
    as ``after`` is) decode in a batch."""
    if isinstance(avro_type, list):
        return all(decodable(b) for b in avro_type if b != "null")
    if isinstance(avro_type, str):
        return avro_type in _DECODABLE
    kind = avro_type.get("type")
    if kind == "array":
        return decodable(avro_type["items"])
    if kind == "record":
        return all(decodable(f["type"]) for f in avro_type["fields"])
    logical = avro_type.get("logicalType")
    if logical == "decimal":
        return kind == "bytes" and int(avro_type.get("precision", 0)) <= MAX_DECIMAL_PRECISION
    return (logical if logical is not None else kind) in _DECODABLE


def envelope_decodable(envelope: dict[str, Any]) -> bool:
    """``decodable`` for a whole event schema: polars reads an enum that is a field of the
    file's own record (the envelope's ``op``), only there."""
    fields = envelope["fields"]
    return all(_is_enum(f["type"]) or decodable(f["type"]) for f in fields)


def _is_enum(avro_type: Any) -> bool:
    return isinstance(avro_type, dict) and avro_type.get("type") == "enum"


def _long(value: int) -> bytes:
    """Avro's zig-zag varint encoding of a long."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag & ~0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def _bytes(data: bytes) -> bytes:
    return _long(len(data)) + data


def container_header(schema: EventSchema) -> bytes:
    """The header of an object container file whose records are single-object encoded
    values of ``schema``: its record is the header (a fixed field) then ``schema``'s fields."""
    plain = plain_schema(schema.parsed)
    fields = [{"name": _HEADER_FIELD, "type": _HEADER_TYPE}, *plain["fields"]]
    text = json.dumps({**plain, "fields": fields}, separators=(",", ":")).encode()
    meta = _long(2) + _bytes(b"avro.schema") + _bytes(text)
    meta += _bytes(b"avro.codec") + _bytes(b"null") + _long(0)
    return _OCF_MAGIC + meta + _SYNC


def container(header: bytes, values: Sequence[bytes]) -> bytes:
    """One container file holding ``values`` (single-object encoded) as one block."""
    body = b"".join(values)
    return b"".join([header, _long(len(values)), _long(len(body)), body, _SYNC])


class BatchDecoder:
    """Decodes a batch of values of one writer schema into the envelope's columns."""

    def __init__(self) -> None:
        # single-object header -> container header; b"" for a schema polars cannot read
        self._headers: dict[bytes, bytes] = {}

    def decode(
        self, schema: EventSchema, values: Sequence[bytes], keys: Sequence[bytes | None]
    ) -> pl.DataFrame | None:
        """The events of ``values`` (all written with ``schema``), or None if in doubt."""
        header = self._headers.get(schema.header)
        if header is None:
            readable = envelope_decodable(plain_schema(schema.parsed))
            header = self._headers[schema.header] = container_header(schema) if readable else b""
        if not header:  # a type polars cannot read: not even tried (it panics, loudly)
            return None
        try:
            frame = pl.read_avro(io.BytesIO(container(header, values)))
            # a value of another schema would have been read with this one: refused whole
            same = pl.col(_HEADER_FIELD) == pl.lit(schema.header, pl.Binary)
            if not frame.select(same.all()).item():
                return None
        # polars raises several kinds on a corrupt block, and may panic (a BaseException)
        except (Exception, PanicException):
            return None
        frame = frame.drop(_HEADER_FIELD)
        return frame if matches_keys(frame, keys) else None


def matches_keys(frame: pl.DataFrame, keys: Sequence[bytes | None]) -> bool:
    """Whether every decoded row is the event its message's key names, in order.

    A body shifted by a corrupt neighbour decodes its tenant and id from the wrong bytes,
    so this also proves that the records were split where the messages were.
    """
    try:
        # one string split in native code instead of a Python object per key; a key with a
        # line break splits into more rows than the frame has, and fails the check
        joined = b"\n".join(keys)  # type: ignore[arg-type]  # a None key raises TypeError
        expected = pl.Series([joined.decode()]).str.split("\n").explode()
        if frame.height != len(keys) or len(expected) != len(keys):
            return False
        decoded = frame["tenant_id"] + "/" + frame["entity_id"].cast(pl.String)
        return bool((decoded == expected).fill_null(False).all())
    except (Exception, PanicException):  # a key not UTF-8, a missing column: use fastavro
        return False


@functools.lru_cache(maxsize=64)
def _lake_columns(
    columns: tuple[str, ...], etl_id: str, key: tuple[str, ...], typed: bool
) -> tuple[pl.Expr, ...]:
    """The expressions of ``lake_table``, built once per table: building them per batch
    costs as much as decoding a few hundred events. ``typed``: the events carry ``key``
    (the second envelope)."""
    after = pl.col("after")
    gone = after.is_null()
    entity = [
        pl.when(gone).then(pl.lit(None)).otherwise(after.struct.field(c)).alias(c)
        for c in columns
        if c not in key
    ]
    for c in key:
        if c in columns:
            # a delete keeps its key so readers can apply it
            kept = pl.col("key").struct.field(c) if typed else pl.col("entity_id")
            entity.append(pl.when(gone).then(kept).otherwise(after.struct.field(c)).alias(c))
    op = pl.col("op").cast(pl.String)
    return (
        *entity,
        pl.col("tenant_id").alias("_tenant_id"),
        op.alias("_op"),
        (op == "d").alias("_deleted"),
        pl.col("position").alias("_position"),
        pl.col("source_ts").alias("_source_ts"),
        pl.lit(etl_id).alias("_etl_id"),
    )


def lake_table(
    frame: pl.DataFrame,
    columns: Sequence[str],
    schema: pa.Schema,
    etl_id: str,
    key: tuple[str, ...] = ("id",),
) -> pa.Table:
    """Lake rows of decoded events, as ``sluiceway.sinks.rows.event_row`` builds them one by
    one; ``key`` is the record key columns, which a delete's row keeps."""
    typed = "key" in frame.columns
    rows = frame.select(*_lake_columns(tuple(columns), etl_id, key, typed))
    return rows.to_arrow().select(schema.names).cast(schema)
