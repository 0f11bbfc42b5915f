"""Encoding a frame of events to Avro single-object values, column by column. Pure.

fastavro encodes one event at a time at ~14 us each, the biggest share of a worker's time.
Avro's binary encoding of a record is the concatenation of its fields' encodings, each a
function of the value alone: so every field is encoded for the whole batch at once with
numpy and Arrow compute, and the fields are then joined row by row. The result is byte for
byte what ``Codec.encode_with`` writes (tests/unit/test_processor_batch.py checks it).

No library encodes Arrow columns to per-row Avro bodies (polars writes container files,
whose blocks carry no per-record boundaries), hence the encoders below. They cover the
types of the change-event schemas; ``ColumnEncoder`` raises ``UnsupportedSchemaError`` for
any other, and a value a schema cannot hold raises ``UnencodableError``: the caller then
encodes event by event with fastavro, which says what is wrong with which event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from sluiceway.common.codec import EventSchema, plain_schema

BINARY = pa.large_binary()
_EMPTY = pa.scalar(b"", BINARY)
Mask = npt.NDArray[np.bool_]
# (values, rows that must hold a value) -> one encoded value per row, as large_binary
Encoder = Callable[[pa.Array, Mask], pa.Array]


class UnsupportedSchemaError(Exception):
    """The schema uses a type this module does not encode."""


class UnencodableError(Exception):
    """A value does not fit its schema (a null where none is allowed, an unknown symbol)."""


def _binary(offsets: npt.NDArray[np.int64], data: npt.NDArray[np.uint8]) -> pa.Array:
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(BINARY, len(offsets) - 1, buffers)


def varints(zigzagged: npt.NDArray[np.uint64]) -> pa.Array:
    """Each value as a base-128 varint, low groups first (Avro's long and int encoding)."""
    size = np.ones(len(zigzagged), np.int64)
    for k in range(1, 10):
        size += zigzagged >= np.uint64(1 << (7 * k))
    offsets = np.zeros(len(zigzagged) + 1, np.int64)
    np.cumsum(size, out=offsets[1:])
    data = np.empty(int(offsets[-1]), np.uint8)
    for k in range(int(size.max(initial=1))):
        rows = np.flatnonzero(size > k)
        group = (zigzagged[rows] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (size[rows] > k + 1).astype(np.uint64) << np.uint64(7)
        data[offsets[rows] + k] = (group | more).astype(np.uint8)
    return _binary(offsets, data)


def zigzag(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """Avro's zig-zag mapping of signed to unsigned (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...)."""
    return ((values << np.int64(1)) ^ (values >> np.int64(63))).view(np.uint64)


def _require(values: pa.Array, present: Mask) -> None:
    if values.null_count and bool(np.any(present & _nulls(values))):
        raise UnencodableError(f"a null {values.type} value where the schema allows none")


def _nulls(values: pa.Array) -> Mask:
    return np.asarray(values.is_null(), dtype=np.bool_)


def _long(values: pa.Array, present: Mask) -> pa.Array:
    _require(values, present)
    if pa.types.is_date32(values.type):  # days since the epoch, as Avro's date holds them
        values = values.cast(pa.int32())
    ints = pc.fill_null(values.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    return varints(zigzag(ints.astype(np.int64, copy=False)))


def _string(values: pa.Array, present: Mask) -> pa.Array:
    _require(values, present)
    data = values.cast(BINARY)
    lengths = pc.fill_null(pc.binary_length(data), 0).to_numpy(zero_copy_only=False)
    return pc.binary_join_element_wise(varints(zigzag(lengths.astype(np.int64))), data, _EMPTY)


def _fixed(width: int, data: npt.NDArray[np.uint8]) -> pa.Array:
    offsets = np.arange(0, len(data) + 1, width, dtype=np.int64)
    return _binary(offsets, data)


def _boolean(values: pa.Array, present: Mask) -> pa.Array:
    _require(values, present)
    flags = pc.fill_null(values, False).to_numpy(zero_copy_only=False)
    return _fixed(1, flags.astype(np.uint8))


def _double(values: pa.Array, present: Mask) -> pa.Array:
    _require(values, present)
    floats = pc.fill_null(values.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
    return _fixed(8, floats.astype("<f8").view(np.uint8))


def _enum(symbols: list[str]) -> Encoder:
    known = pa.array(symbols)

    def encode(values: pa.Array, present: Mask) -> pa.Array:
        index = pc.index_in(values.cast(pa.string()), value_set=known)
        _require(index, present)  # an unknown symbol indexes to null
        return _long(index, present)

    return encode


def _union(branches: list[Any], names: dict[str, Any]) -> Encoder:
    if len(branches) != 2 or "null" not in branches:
        raise UnsupportedSchemaError(f"union {branches!r}; expected a null and one other type")
    null_at = branches.index("null")
    value = _encoder(branches[1 - null_at], names)
    tags = [pa.scalar(bytes([2 * i]), BINARY) for i in range(2)]  # zig-zag varint of 0 and 1

    def encode(values: pa.Array, present: Mask) -> pa.Array:
        valid = ~_nulls(values)
        encoded = pc.binary_join_element_wise(tags[1 - null_at], value(values, valid), _EMPTY)
        return pc.if_else(pa.array(valid), encoded, tags[null_at])

    return encode


def _record(schema: dict[str, Any], names: dict[str, Any]) -> Encoder:
    fields = [(f["name"], _encoder(f["type"], names)) for f in schema["fields"]]

    def encode(values: pa.Array, present: Mask) -> pa.Array:
        if not isinstance(values, pa.StructArray):
            raise UnencodableError(f"record {schema['name']} given {values.type}")
        # flatten() applies the array's offset and validity to its children, which field()
        # leaves as they are
        given = values.flatten()
        by_name = {values.type.field(i).name: given[i] for i in range(values.type.num_fields)}
        missing = [name for name, _ in fields if name not in by_name]
        if missing:
            raise UnencodableError(f"record {schema['name']} lacks {', '.join(missing)}")
        inner = present & ~_nulls(values)
        parts = [enc(by_name[name], inner) for name, enc in fields]
        return pc.binary_join_element_wise(*parts, _EMPTY)

    return encode


_PRIMITIVES: dict[str, Encoder] = {
    "long": _long, "int": _long, "string": _string, "boolean": _boolean, "double": _double,
}  # fmt: skip
# Logical types whose values polars and Arrow hold as their Avro base type's integer.
_LOGICAL = {("long", "timestamp-micros"), ("int", "date")}


def _encoder(schema: Any, names: dict[str, Any]) -> Encoder:
    if isinstance(schema, list):
        return _union(schema, names)
    if isinstance(schema, str):
        if schema in names:
            return _encoder(names[schema], names)
        if schema not in _PRIMITIVES:
            raise UnsupportedSchemaError(f"type {schema!r}")
        return _PRIMITIVES[schema]
    kind, logical = schema["type"], schema.get("logicalType")
    if kind in ("record", "enum"):
        names[schema["name"]] = schema
        if kind == "enum":
            return _enum(list(schema["symbols"]))
        return _record(schema, names)
    if logical is not None and (kind, logical) not in _LOGICAL:
        raise UnsupportedSchemaError(f"logical type {logical!r} of {kind!r}")
    return _encoder(kind, names)


class ColumnEncoder:
    """Encodes the rows of a frame (one column per envelope field) with one run schema."""

    def __init__(self, schema: EventSchema) -> None:
        self.schema = schema
        self._encode = _encoder(plain_schema(schema.parsed), {})
        self._header = pa.scalar(schema.header, BINARY)

    def encode(self, frame: pl.DataFrame) -> list[bytes]:
        """Each row's single-object encoded value; UnencodableError if one cannot be."""
        rows = frame.to_arrow().to_struct_array()
        if isinstance(rows, pa.ChunkedArray):
            rows = rows.combine_chunks()
        return self.encode_rows(rows)

    def encode_rows(self, rows: pa.StructArray) -> list[bytes]:
        """``encode`` of rows already in Arrow (one struct field per envelope field)."""
        body = self._encode(rows, np.ones(len(rows), np.bool_))
        values = pc.binary_join_element_wise(self._header, body, _EMPTY)
        if values.null_count:
            raise UnencodableError("a value came out null")
        out: list[bytes] = values.to_pylist()
        return out
