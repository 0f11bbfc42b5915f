"""Upper bounds on the encoded size of Parquet row groups and footers. Pure.

The writer closes a file before a row group that could break the byte cap, so these are
bounds, not guesses: each term over-counts what Arrow's Parquet writer can emit.

- data: PLAIN encoding never exceeds the Arrow buffers (nbytes); dictionary encoding adds
  at most the RLE/bit-packed indices; definition levels add about a bit per row.
- pages: every page adds a header with its own min/max statistics; a column chunk has at
  most one data page per 1024-row write batch and per 1 MiB of encoded data, plus a
  dictionary page, plus the extra page forced by a dictionary fallback.
- codecs: each page may grow by the codec's documented worst case.
- footer: per column chunk, metadata plus min/max statistics (capped by the writer at
  4096 bytes each); per file, the schema, the serialised Arrow schema and our metadata.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

_PAGE_ROWS = 1024  # Arrow's default write_batch_size: a page holds at least one batch
_PAGE_BYTES = 1024 * 1024  # default data_page_size
_MAX_STAT = 4096  # default max_statistics_size: larger min/max values are dropped
_PAGE_HEADER = 48
_CHUNK_META = 192
_RLE_RUN = 504  # values per bit-packed run: each run adds a header
# worst-case growth of a compressed page: fraction of its size + constant
_CODEC_SLACK: dict[str, tuple[float, int]] = {
    "none": (0.0, 0),
    # zstd stores incompressible input as raw blocks: frame header + 3 bytes per block
    "zstd": (1 / 256, 24),
    "lz4": (1 / 255, 16),
    "snappy": (1 / 6, 32),
    "gzip": (1 / 1024, 32),
    "brotli": (1 / 1024, 32),
}


@dataclass(frozen=True)
class RowGroupBound:
    data: int  # encoded column chunks
    footer: int  # what the row group adds to the footer

    @property
    def total(self) -> int:
        return self.data + self.footer


def _is_bytes(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_binary(kind))


def _stat_len(column: pa.ChunkedArray) -> int:
    """Bound on the size of one min or max statistic of the column."""
    if _is_bytes(column.type):
        if column.null_count == len(column):
            return 0
        longest = pc.max(pc.binary_length(column)).as_py()
        return min(int(longest or 0), _MAX_STAT)
    return 8


def _rle_bytes(rows: int, bit_width: int) -> int:
    return 8 + math.ceil(rows * bit_width / 8) + 2 * (rows // _RLE_RUN + 1) + bit_width


def _chunk_bound(column: pa.ChunkedArray, codec: str) -> tuple[int, int]:
    """(data bound, footer bound) of one column chunk."""
    rows = len(column)
    stat = _stat_len(column)
    index_width = max(1, rows.bit_length())
    encoded = column.nbytes + _rle_bytes(rows, 1) + _rle_bytes(rows, index_width)
    # a fallback from dictionary to plain (only past 1 MiB of dictionary) adds a page
    data_pages = 1 + rows // _PAGE_ROWS + 2 * (encoded // _PAGE_BYTES)
    fraction, constant = _CODEC_SLACK[codec]
    data_page = _PAGE_HEADER + 4 * (stat + 4) + constant
    dictionary_page = _PAGE_HEADER + constant
    data = encoded + math.ceil(encoded * fraction) + data_pages * data_page + dictionary_page
    # byte arrays sort unsigned, so only min_value/max_value are kept, not the legacy pair
    footer = _CHUNK_META + (2 if _is_bytes(column.type) else 4) * stat
    return data, footer


def row_group_bound(table: pa.Table, codec: str) -> RowGroupBound:
    """Bound on the bytes ``table`` adds to a file when written as one row group."""
    data = 0
    footer = 32
    for name, column in zip(table.column_names, table.columns, strict=True):
        chunk_data, chunk_footer = _chunk_bound(column, codec)
        data += chunk_data
        footer += chunk_footer + 2 * len(name.encode())
    return RowGroupBound(data=data, footer=footer)


def footer_base(schema: pa.Schema, key_values: dict[str, str]) -> int:
    """Bound on the footer of a file with no row group, plus the magic bytes around it."""
    arrow_schema = len(base64.b64encode(schema.serialize().to_pybytes()))
    columns = sum(32 + 2 * len(name.encode()) for name in schema.names)
    extra = sum(16 + len(k.encode()) + len(v.encode()) for k, v in key_values.items())
    return 512 + arrow_schema + columns + extra + 12
