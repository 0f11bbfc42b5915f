"""The column encoders of sluiceway/common/avro_encode.py against fastavro's own bytes, on
the edge values of each type: the Arrow columns are of the types polars decodes them to
(decimal256 for the widest decimals, which polars cannot hold but Arrow can)."""

from __future__ import annotations

import io
import struct
from datetime import datetime, time
from decimal import Context, Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from sluiceway.common.avro_encode import UnencodableError, encode_values


def fastavro_bytes(schema: Any, values: list[Any]) -> list[bytes]:
    out = []
    for value in values:
        buffer = io.BytesIO()
        schemaless_writer(buffer, parse_schema(schema), value)
        out.append(buffer.getvalue())
    return out


def scaled(unscaled: int, scale: int) -> Decimal:
    """The decimal of an unscaled integer, every digit kept (the default context keeps 28)."""
    return Decimal(unscaled).scaleb(-scale, Context(prec=200))


def decimal(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


# around each byte boundary, where fastavro's length (by the magnitude) is not the minimal
# two's complement one (-128 takes two bytes)
BOUNDARIES = [v for k in (7, 8, 15, 16, 63, 64, 120) for v in (2**k - 1, 2**k, 2**k + 1)]
UNSCALED = [
    0,
    1,
    -1,
    127,
    -127,
    -128,
    -129,
    255,
    -255,
    -256,
    *BOUNDARIES,
    *(-v for v in BOUNDARIES),
]


@pytest.mark.parametrize(("precision", "scale"), [(38, 0), (30, 10), (9, 3), (1, 0)])
def test_decimal128_is_fastavros_bytes(precision: int, scale: int) -> None:
    limit = 10**precision
    unscaled = [u for u in UNSCALED if abs(u) < limit] + [limit - 1, 1 - limit]
    values = [scaled(u, scale) for u in unscaled]
    column = pa.array(values, pa.decimal128(precision, scale))
    assert encode_values(decimal(precision, scale), column) == fastavro_bytes(
        decimal(precision, scale), values
    )


@pytest.mark.parametrize("scale", [0, 20, 76])
def test_decimal256_up_to_76_digits_is_fastavros_bytes(scale: int) -> None:
    top = 10**76 - 1
    unscaled = [*UNSCALED, top, -top, 2**200, -(2**200), 2**247 - 1, -(2**247)]
    values = [scaled(u, scale) for u in unscaled if abs(u) <= top]
    column = pa.array(values, pa.decimal256(76, scale))
    assert encode_values(decimal(76, scale), column) == fastavro_bytes(decimal(76, scale), values)


def test_decimal_nulls_sliced_columns_and_a_value_too_wide() -> None:
    schema = ["null", decimal(5, 2)]
    values = [Decimal("-1.28"), None, Decimal("0.00"), Decimal("-0.01")]
    column = pa.array([Decimal("1.00"), *values], pa.decimal128(5, 2)).slice(1)
    assert encode_values(schema, column) == fastavro_bytes(schema, values)
    with pytest.raises(UnencodableError):  # six digits in a numeric(5,2)
        encode_values(schema, pa.array([Decimal("1000.00")], pa.decimal128(6, 2)))
    with pytest.raises(UnencodableError):  # another scale is another unscaled integer
        encode_values(schema, pa.array([Decimal("1.0")], pa.decimal128(5, 1)))


def test_time_micros_from_polars_nanoseconds() -> None:
    schema = ["null", {"type": "long", "logicalType": "time-micros"}]
    values = [time(0), time(23, 59, 59, 999999), time(12, 0, 0, 1), None]
    assert encode_values(schema, pa.array(values, pa.time64("ns"))) == fastavro_bytes(
        schema, values
    )
    assert encode_values(schema, pa.array(values, pa.time64("us"))) == fastavro_bytes(
        schema, values
    )
    with pytest.raises(UnencodableError):  # fastavro would read 24:00 back as an error
        encode_values(schema, pa.array([86_400_000_000], pa.int64()))


def test_local_timestamps_are_fastavros_bytes_and_refused_out_of_range() -> None:
    schema = {"type": "long", "logicalType": "local-timestamp-micros"}
    values = [
        datetime(1, 1, 1), datetime(1969, 12, 31, 23, 59, 59, 999999), datetime(1970, 1, 1),
        datetime(9999, 12, 31, 23, 59, 59, 999999),
    ]  # fmt: skip
    column = pa.array(values, pa.timestamp("us"))
    assert encode_values(schema, column) == fastavro_bytes(schema, values)
    with pytest.raises(UnencodableError):
        encode_values(schema, pa.array([253_402_300_800_000_000], pa.int64()))
    with pytest.raises(UnencodableError):  # a zoned column is not a local timestamp
        encode_values(schema, pa.array(values, pa.timestamp("us", tz="Europe/Paris")))


def _roundtrip_float(bits: int) -> bytes:
    """What the per-event path writes for a float read from these bits."""
    value = schemaless_reader(io.BytesIO(struct.pack("<I", bits)), parse_schema("float"), None)
    return fastavro_bytes("float", [value])[0]


def test_floats_keep_their_bits_as_fastavro_does_nan_and_infinities_included() -> None:
    bits = [
        0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800123, 0x7FA00000, 0x7F800000, 0xFF800000,
        0x80000000, 0x00000000, 0x00000001, 0x7F7FFFFF, 0x3F800000,
    ]  # fmt: skip
    column = pa.array(np.array(bits, np.uint32).view(np.float32), pa.float32())
    assert encode_values("float", column) == [_roundtrip_float(b) for b in bits]
    values = [float("nan"), float("inf"), float("-inf"), -0.0, 1.5, None]
    column = pa.array(values, pa.float32())
    assert encode_values(["null", "float"], column) == fastavro_bytes(["null", "float"], values)


def test_bytes_and_uuids() -> None:
    schema = ["null", "bytes"]
    values = [b"", b"\x00", None, b"\xff" * 300]
    assert encode_values(schema, pa.array(values, pa.large_binary())) == fastavro_bytes(
        schema, values
    )
    uuid = {"type": "string", "logicalType": "uuid"}
    texts = ["00000000-0000-0000-0000-000000000000", "d1a5e7c2-9c5b-4f7e-8a7d-0123456789ab"]
    assert encode_values(uuid, pa.array(texts, pa.large_string())) == fastavro_bytes(uuid, texts)
    with pytest.raises(UnencodableError):  # fastavro would write it back in lower case
        encode_values(uuid, pa.array([texts[1].upper()], pa.large_string()))


@pytest.mark.parametrize(
    ("items", "arrow", "rows"),
    [
        ("long", pa.int64(), [[], [None], [1, None, -1], None, [2**63 - 1]]),
        ("string", pa.large_string(), [[""], [], [None, "é", "x" * 200], None]),
        (decimal(9, 3), pa.decimal128(9, 3), [[Decimal("-1.280"), None], [], None]),
        ({"type": "long", "logicalType": "time-micros"}, pa.time64("ns"), [[time(0)], []]),
        ("bytes", pa.large_binary(), [[b"", None], [], [b"\x01\x02"]]),
    ],
)
def test_arrays_are_one_block_then_zero_as_fastavro_writes_them(
    items: Any, arrow: pa.DataType, rows: list[Any]
) -> None:
    schema = ["null", {"type": "array", "items": ["null", items]}]
    column = pa.array([[None], *rows], pa.large_list(arrow)).slice(1)  # an offset too
    assert encode_values(schema, column) == fastavro_bytes(schema, rows)


def test_a_long_array_counts_its_items_in_a_multi_byte_varint() -> None:
    schema = {"type": "array", "items": ["null", "boolean"]}
    rows = [[True] * 200, [None] * 64, []]
    column = pa.array(rows, pa.large_list(pa.bool_()))
    assert encode_values(schema, column) == fastavro_bytes(schema, rows)
