"""Reading a snapshot chunk with COPY into Arrow columns, without a Python object per value.

psycopg2 builds a tuple of Python values for every row it fetches; for a table the column
path encodes (producers/snapshot_columns.py) those objects are only turned back into
columns. So such a chunk is read with ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` and
parsed by pyarrow's CSV reader straight into typed columns: the same SELECT in the same
snapshot, so the same values (tests/integration/test_snapshot_bytes.py compares the
records of both ways on the values CSV could get wrong).

CSV keeps NULL and the empty string apart (an unquoted empty field is NULL, ``""`` is the
empty string), which pyarrow honours with ``quoted_strings_can_be_null=False``; no other
text is NULL (pyarrow's defaults would also take ``NaN`` and ``NULL``).
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv


def copy_out(cur: Any, select: bytes) -> io.BytesIO:
    """The CSV text of ``select`` (a full SELECT, parameters already bound): the part of a
    read that runs on the source."""
    out = io.BytesIO()
    cur.copy_expert(b"COPY (" + select + b") TO STDOUT WITH (FORMAT csv)", out)
    return out


def copy_parse(out: io.BytesIO, names: list[str], types: list[pa.DataType]) -> pa.Table:
    """``copy_out``'s text, one column per name, typed as ``types`` (string, int32/64, bool,
    float64; the columns producers/snapshot_text.py converts are read as string)."""
    if not out.getbuffer().nbytes:  # no rows (pyarrow refuses an empty file)
        return pa.Table.from_arrays([pa.array([], type=t) for t in types], names=names)
    out.seek(0)
    return pacsv.read_csv(
        out,
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types=dict(zip(names, types, strict=True)),
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
