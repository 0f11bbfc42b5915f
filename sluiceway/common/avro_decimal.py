"""Avro decimals on bytes, encoded for a whole Arrow decimal column at once. Pure.

fastavro writes a decimal's unscaled integer big-endian in two's complement, in
``(bit_length(abs(n)) + 8) // 8`` bytes: the minimum, except that a negative power of two
such as -128 or -32768 takes one byte more (fastavro sizes by the magnitude). Arrow holds
the unscaled integers little-endian in 16 (decimal128) or 32 (decimal256) bytes each, so
the Avro bytes of a value are the last ``size`` of its bytes reversed, found for every row
with numpy instead of a Python int per value.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

Mask = npt.NDArray[np.bool_]
_LIMB = 0xFFFFFFFFFFFFFFFF


def unscaled_bytes(values: pa.Array) -> npt.NDArray[np.uint8]:
    """Each value's unscaled integer, little-endian two's complement, one row per value
    (a null's row holds whatever its slot does)."""
    width = values.type.byte_width
    data = np.frombuffer(values.buffers()[1], np.uint8)
    start = values.offset * width
    return data[start : start + len(values) * width].reshape(len(values), width)


def exceeds(raw: npt.NDArray[np.uint8], valid: Mask, precision: int) -> bool:
    """Whether a valid row's unscaled integer has more than ``precision`` digits."""
    return bool(np.any(valid & _at_least(_magnitude(raw), 10**precision)))


def avro_decimals(
    raw: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """The offsets and bytes of each row's Avro ``bytes`` value, its length included."""
    size = _byte_lengths(_magnitude(raw).view(np.uint8))
    width = raw.shape[1]
    # the zig-zag varint of a length up to 33 is one byte: it leads each row's bytes
    rows = np.empty((len(raw), width + 1), np.uint8)
    rows[:, 0] = (size * 2).astype(np.uint8)
    rows[:, 1:] = raw[:, ::-1]  # little-endian in Arrow, big-endian in Avro
    keep = np.arange(width + 1) > (width - size)[:, None]  # row columns are shifted by one
    keep[:, 0] = True
    offsets = np.zeros(len(raw) + 1, np.int64)
    np.cumsum(size + 1, out=offsets[1:])
    return offsets, rows[keep]


def _magnitude(raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """The absolute values as little-endian 64-bit limbs (two's complement negated)."""
    limbs = np.ascontiguousarray(raw).view("<u8").astype(np.uint64)
    negated = ~limbs
    carry = np.ones(len(raw), np.bool_)
    for j in range(limbs.shape[1]):
        negated[:, j] += carry.astype(np.uint64)
        carry &= negated[:, j] == 0
    out: npt.NDArray[np.uint64] = np.where((raw[:, -1] >= 0x80)[:, None], negated, limbs)
    return out


def _at_least(limbs: npt.NDArray[np.uint64], bound: int) -> Mask:
    """Which rows' numbers (little-endian limbs) are at least ``bound``."""
    if bound >> (64 * limbs.shape[1]):
        return np.zeros(len(limbs), np.bool_)
    result = np.ones(len(limbs), np.bool_)
    for j in range(limbs.shape[1]):  # from the lowest limb: a higher one decides over it
        part = np.uint64((bound >> (64 * j)) & _LIMB)
        result = (limbs[:, j] > part) | ((limbs[:, j] == part) & result)
    return result


def _byte_lengths(magnitude: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """``(bit_length + 8) // 8`` of each magnitude (rows of little-endian bytes)."""
    width = magnitude.shape[1]
    nonzero = magnitude != 0
    top = width - 1 - np.argmax(nonzero[:, ::-1], axis=1)  # the highest nonzero byte
    high_bit = magnitude[np.arange(len(magnitude)), top] >= 0x80
    size = top + 1 + high_bit
    lengths: npt.NDArray[np.int64] = np.where(nonzero.any(axis=1), size, 1).astype(np.int64)
    return lengths
