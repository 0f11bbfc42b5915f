"""Encoding a frame of events to Avro single-object values, column by column. Pure.

fastavro encodes one event at a time at ~14 us each, the biggest share of a worker's time.
Avro's binary encoding of a record is the concatenation of its fields' encodings, each a
function of the value alone: so every field is encoded for the whole batch at once with
numpy and Arrow compute, and the fields are then joined row by row. The result is byte for
byte what ``Codec.encode_with`` writes (tests/unit/test_processor_batch.py checks it).

No library encodes Arrow columns to per-row Avro bodies (polars writes container files,
whose blocks carry no per-record boundaries), hence the encoders below. They cover every
type of docs/types.md as Arrow holds it after polars decodes it (decimals in
sluiceway/common/avro_decimal.py; tests/unit/test_avro_encode_types.py compares each with
fastavro's bytes); ``ColumnEncoder`` raises ``UnsupportedSchemaError`` for any other type,
and a value fastavro would write otherwise than as it came (a uuid in capitals, a time past
midnight) or a schema cannot hold raises ``UnencodableError``: the caller then encodes
event by event with fastavro, which says what is wrong with which event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from sluiceway.common.avro_decimal import avro_decimals, exceeds, unscaled_bytes
from sluiceway.common.codec import EventSchema, plain_schema

BINARY = pa.large_binary()
_EMPTY = pa.scalar(b"", BINARY)
Mask = npt.NDArray[np.bool_]
# (values, rows that must hold a value) -> one encoded value per row, as large_binary
Encoder = Callable[[pa.Array, Mask], pa.Array]


_F32_EXPONENT, _F32_MANTISSA, _F32_QUIET = 0x7F800000, 0x007FFFFF, 0x00400000
_UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)  # a long's ten 7-bit groups, low first
_COLUMNS = np.arange(10)
_DAY_MICROS = 86_400_000_000
# datetime's range, 0001-01-01 to 9999-12-31 23:59:59.999999, in microseconds since 1970:
# fastavro cannot read a local timestamp outside it back
_LOCAL_RANGE = (-62_135_596_800_000_000, 253_402_300_799_999_999)
_DATE_RANGE = (-719_162, 2_932_896)  # 0001-01-01 and 9999-12-31 in days since 1970
_RANGES = {
    "time-micros": (0, _DAY_MICROS - 1), "local-timestamp-micros": _LOCAL_RANGE,
    "timestamp-micros": _LOCAL_RANGE, "date": _DATE_RANGE,
}  # fmt: skip


class UnsupportedSchemaError(Exception):
    """The schema uses a type this module does not encode."""


class UnencodableError(Exception):
    """A value does not fit its schema (a null where none is allowed, an unknown symbol)."""


def _binary(offsets: npt.NDArray[np.int64], data: npt.NDArray[np.uint8]) -> pa.Array:
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(BINARY, len(offsets) - 1, buffers)


def varints(zigzagged: npt.NDArray[np.uint64]) -> pa.Array:
    """Each value as a base-128 varint, low groups first (Avro's long and int encoding).

    Every value's groups are cut at once into a (values x widest) byte matrix, whose bytes
    that belong to a varint are, read row by row, the encoded column: a few passes over the
    matrix instead of a gather and a scatter per byte position. When every value takes as
    many bytes (timestamps, positions, lengths of like strings: most columns), the matrix
    is the column as it stands."""
    if not len(zigzagged):
        return _binary(np.zeros(1, np.int64), np.empty(0, np.uint8))
    width = _width(int(zigzagged.max()))
    groups = (zigzagged[:, None] >> _SHIFTS[:width]).astype(np.uint8) & np.uint8(0x7F)
    if _width(int(zigzagged.min())) == width:
        groups[:, : width - 1] |= np.uint8(0x80)
        return _fixed(width, groups.reshape(-1))
    size = np.ones(len(zigzagged), np.int64)
    for k in range(1, width):
        size += zigzagged >= np.uint64(1 << (7 * k))
    columns = _COLUMNS[:width]
    more = (columns < (size - 1)[:, None]).view(np.uint8) << np.uint8(7)
    data = (groups | more)[columns < size[:, None]]
    offsets = np.zeros(len(zigzagged) + 1, np.int64)
    np.cumsum(size, out=offsets[1:])
    return _binary(offsets, data)


def _width(value: int) -> int:
    """Bytes in the varint of ``value`` (zig-zagged already)."""
    return max(1, -(-value.bit_length() // 7))


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


def _float(values: pa.Array, present: Mask) -> pa.Array:
    _require(values, present)
    if not pa.types.is_float32(values.type):  # a wider float would be rounded: fastavro's job
        raise UnencodableError(f"a {values.type} column for an Avro float")
    floats = pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False)
    bits = floats.astype("<f4").view(np.uint32)
    # fastavro reads a float into a Python float (a double) and writes it back: that sets a
    # signalling NaN's quiet bit, payload and sign kept
    nan = (bits & np.uint32(_F32_EXPONENT)) == _F32_EXPONENT
    nan &= (bits & np.uint32(_F32_MANTISSA)) != 0
    bits = np.where(nan, bits | np.uint32(_F32_QUIET), bits).astype("<u4")
    return _fixed(4, bits.view(np.uint8))


def _temporal(logical: str) -> Encoder:
    """A time or timestamp logical type: its Avro long, from Arrow's temporal type or from
    the integer itself; a value fastavro could not read back (out of range) is refused."""
    low, high = _RANGES[logical]

    def encode(values: pa.Array, present: Mask) -> pa.Array:
        _require(values, present)
        ints = _avro_ints(values, logical)
        valid = ~_nulls(values)
        if bool(np.any(valid & ((ints < low) | (ints > high)))):
            raise UnencodableError(f"a {logical} value out of range")
        return varints(zigzag(ints))

    return encode


def _in_range(encode: Encoder, logical: str) -> Encoder:
    """``encode`` (a timestamp's or a date's integer), refusing what fastavro could not read
    back (the snapshot's sentinel for infinity and BC among them: snapshot_temporal.py)."""
    low, high = _RANGES[logical]

    def checked(values: pa.Array, present: Mask) -> pa.Array:
        days = pa.types.is_date32(values.type)
        ints = _int64(values.cast(pa.int32()) if days else values)
        if bool(np.any(~_nulls(values) & ((ints < low) | (ints > high)))):
            raise UnencodableError(f"a {logical} value out of range")
        return encode(values, present)

    return checked


def _avro_ints(values: pa.Array, logical: str) -> npt.NDArray[np.int64]:
    """The Avro long of each value (nulls 0): microseconds since the epoch or midnight."""
    kind = values.type
    if pa.types.is_integer(kind):
        return _int64(values)
    if logical == "time-micros" and pa.types.is_time64(kind):
        ints = _int64(values)
        if kind.unit == "us":
            return ints
        if bool(np.any(ints % 1000)):  # polars holds times in ns; a sub-microsecond is not Avro's
            raise UnencodableError("a time finer than a microsecond")
        return ints // 1000
    local = logical == "local-timestamp-micros"
    if pa.types.is_timestamp(kind) and kind.unit == "us" and (kind.tz is None or not local):
        return _int64(values)
    raise UnencodableError(f"a {kind} column for Avro {logical}")


def _int64(values: pa.Array) -> npt.NDArray[np.int64]:
    ints = pc.fill_null(values.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    return ints.astype(np.int64, copy=False)


def _uuid(values: pa.Array, present: Mask) -> pa.Array:
    _require(values, present)
    # fastavro reads a uuid into a UUID and writes str() of it back: only the canonical
    # text survives that unchanged, so any other spelling goes event by event
    canonical = pc.fill_null(pc.match_substring_regex(values.cast(pa.large_string()), _UUID), True)
    if not pc.all(canonical, min_count=0).as_py():  # an empty column holds no doubt
        raise UnencodableError("a uuid not in its canonical lower-case form")
    return _string(values, present)


def _decimal(precision: int, scale: int) -> Encoder:
    def encode(values: pa.Array, present: Mask) -> pa.Array:
        _require(values, present)
        kind = values.type
        if not pa.types.is_decimal(kind) or kind.scale != scale:
            raise UnencodableError(f"a {kind} column for Avro decimal({precision},{scale})")
        if kind.byte_width < 16:  # decimal32 and decimal64: avro_decimal reads 64-bit limbs
            values = values.cast(pa.decimal128(kind.precision, scale))
        raw = unscaled_bytes(values)
        if exceeds(raw, ~_nulls(values), precision):
            raise UnencodableError(f"a decimal of more than {precision} digits")
        return _binary(*avro_decimals(raw))

    return encode


def _array(items: Encoder) -> Encoder:
    """Avro's array as fastavro writes it: one block (count, items) then 0; empty: 0."""
    end = pa.scalar(b"\x00", BINARY)

    def encode(values: pa.Array, present: Mask) -> pa.Array:
        _require(values, present)
        if not isinstance(values, pa.ListArray | pa.LargeListArray):
            raise UnencodableError(f"a {values.type} column for an Avro array")
        # flatten() skips the offset and whatever a null list's slot may hold
        flat = values.flatten()
        counts = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
        counts = counts.astype(np.int64)
        encoded = items(flat, np.ones(len(flat), np.bool_))
        item_offsets, data = _offsets_and_data(encoded)
        starts = np.zeros(len(values) + 1, np.int64)
        np.cumsum(counts, out=starts[1:])
        # a row's items are consecutive, so their bytes are one slice of the items' data
        joined = _binary(item_offsets[starts] - item_offsets[0], data)
        block = pc.if_else(pa.array(counts > 0), varints(zigzag(counts)), _EMPTY)
        return pc.binary_join_element_wise(block, joined, end, _EMPTY)

    return encode


def _offsets_and_data(values: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """A large_binary array's offsets (len + 1) and the bytes they index."""
    if values.null_count:
        raise UnencodableError("an array item came out null")
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], np.int64)[values.offset : values.offset + len(values) + 1]
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    return offsets, data[offsets[0] : offsets[-1]]


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
    "float": _float, "bytes": _string,
}  # fmt: skip
# Logical types whose values polars and Arrow hold as their Avro base type's integer.
_INTEGRAL = {("long", "timestamp-micros"), ("int", "date")}
_LOGICAL: dict[tuple[str, str], Encoder] = {
    ("string", "uuid"): _uuid,
    ("long", "time-micros"): _temporal("time-micros"),
    ("long", "local-timestamp-micros"): _temporal("local-timestamp-micros"),
}


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
    if kind == "array":
        return _array(_encoder(schema["items"], names))
    if logical is None:
        return _encoder(kind, names)
    if (kind, logical) in _INTEGRAL:
        return _in_range(_encoder(kind, names), logical)
    if (kind, logical) in _LOGICAL:
        return _LOGICAL[kind, logical]
    if (kind, logical) == ("bytes", "decimal"):
        return _decimal(schema["precision"], schema.get("scale", 0))
    raise UnsupportedSchemaError(f"logical type {logical!r} of {kind!r}")


def encode_values(schema: Any, values: pa.Array) -> list[bytes]:
    """Each of ``values`` encoded with the Avro type ``schema`` alone, without a header."""
    encoded = _encoder(schema, {})(values, np.ones(len(values), np.bool_))
    if encoded.null_count:
        raise UnencodableError("a value came out null")
    out: list[bytes] = encoded.to_pylist()
    return out


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
