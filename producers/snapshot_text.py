"""Text columns of a snapshot chunk turned into the Arrow columns the column encoder takes,
a whole column at a time. Pure.

uuid, numeric(p,s), real, bytea, time and timestamp columns are read as their text output
(``col::text``), as the per-row path reads them. The SELECT does not hand them over as the
integers or bytes Avro stores: the per-row path must get the very text when a chunk falls
back to it, so that it refuses what the mapping cannot carry (NaN in a numeric(p,s),
``infinity``, BC and years after 9999, ``24:00:00``) with its one-line error; an integer
expression would turn such a value into a query error, or into a number Avro would take.

Each conversion here uses Arrow's own parsers (its ISO 8601 and decimal parsers, C++) or
``binascii`` for hex, and gives exactly what the per-row parser (sluiceway/common/pgtypes.py)
gives for every text that parser takes. Any text it cannot read raises, and the chunk then
takes the per-row path: what Arrow takes is a subset of what PostgreSQL prints and the
per-row parser reads, and whatever passes here but is out of Avro's range is refused by the
encoder's own range checks (avro_encode ``_temporal``, ``_uuid``, ``_decimal``).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluiceway.common.avro_encode import BINARY, UnencodableError

# PostgreSQL's text -> the Arrow column the encoder takes (raises when a text is not read)
Converter = Callable[[pa.Array], pa.Array]
_HEX_PREFIX = "\\x"


def as_read(values: pa.Array) -> pa.Array:
    """A column read as its value itself (the SELECT gives it, or its integer in Avro)."""
    return values


def uuid(values: pa.Array) -> pa.Array:
    """A uuid's text is its Avro string (the encoder checks that it is the canonical one)."""
    return values


def decimal(kind: pa.DataType) -> Converter:
    """A numeric(p,s) column: Arrow refuses NaN, ±Infinity and more than p digits."""

    def convert(values: pa.Array) -> pa.Array:
        return pc.cast(values, kind)

    return convert


def real(values: pa.Array) -> pa.Array:
    """A real column, through a double as pgtypes._real goes (float() then rounded to 32
    bits), so that even a text a direct 32-bit parse would round otherwise gives its bits."""
    return pc.cast(pc.cast(values, pa.float64()), pa.float32(), safe=False)


def timestamp(values: pa.Array) -> pa.Array:
    """A timestamp column (microseconds since 1970, no zone): Arrow reads four-digit years
    only and no ``BC`` or ``infinity``."""
    return pc.cast(values, pa.timestamp("us"))


def time_of_day(values: pa.Array) -> pa.Array:
    """A time column as microseconds since midnight: Arrow casts no text to a time, so each
    is read as a time on 1970-01-01 (which refuses ``24:00:00``)."""
    on_epoch = pc.binary_join_element_wise("1970-01-01 ", values.cast(pa.string()), "")
    return pc.cast(on_epoch, pa.timestamp("us")).cast(pa.int64())


def bytea(values: pa.Array) -> pa.Array:
    """A bytea column from its hex output (``\\x`` then two digits a byte); the escape
    output (``bytea_output = escape``) is left to the per-row path."""
    text = pc.fill_null(values.cast(pa.large_string()), _HEX_PREFIX)
    prefixed = pc.starts_with(text, _HEX_PREFIX)
    even = pc.equal(pc.bit_wise_and(pc.binary_length(text), 1), 0)
    if not pc.all(pc.and_(prefixed, even), min_count=0).as_py():
        raise UnencodableError("a bytea text that is not in the hex output format")
    offsets = np.frombuffer(text.buffers()[1], np.int64)[text.offset : text.offset + len(text) + 1]
    data = np.frombuffer(text.buffers()[2] or b"", np.uint8)[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    digits = np.ones(len(data), np.bool_)
    digits[offsets[:-1]] = digits[offsets[:-1] + 1] = False  # every value's \x
    try:
        raw = binascii.unhexlify(data[digits].tobytes())
    except binascii.Error as e:
        raise UnencodableError(f"a bytea text that is not hex: {e}") from None
    byte_offsets = (offsets - 2 * np.arange(len(offsets))) // 2
    buffers = [None, pa.py_buffer(byte_offsets), pa.py_buffer(raw)]
    decoded = pa.Array.from_buffers(BINARY, len(text), buffers)
    return pc.if_else(values.is_null(), pa.scalar(None, BINARY), decoded)
