"""A snapshot chunk's events encoded column by column. Pure.

fastavro encodes one event at a time, about half of the snapshot's time. A chunk's rows
all share one envelope but their row values, so the chunk is turned into Arrow columns
and encoded at once by the column encoder the processor uses
(sluiceway/common/avro_encode.py): byte for byte what ``Codec.encode`` writes
(tests/unit/test_snapshot_columns.py compares both on random rows).

It covers tables keyed by one integer column whose columns are all of the primitive Avro
types the encoder knows (long, int, string, boolean, double, timestamp-micros, date).
Any other table, or a chunk holding a value
its column's type cannot hold, takes the per-row path, which says what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sluiceway.common.avro_encode import ColumnEncoder, UnencodableError, UnsupportedSchemaError
from sluiceway.common.codec import EventSchema, plain_schema
from sluiceway.common.partitioning import tenant_base
from sluiceway.common.settings import KafkaSettings
from sluiceway.producers.tables import CapturedTable

_PRIMITIVE: dict[str, pa.DataType] = {
    "long": pa.int64(), "int": pa.int32(), "string": pa.string(),
    "boolean": pa.bool_(), "double": pa.float64(),
}  # fmt: skip
# The snapshot reads these temporal columns as the integers Avro stores (snapshot.read_as).
_LOGICAL: dict[tuple[str, str], pa.DataType] = {
    ("long", "timestamp-micros"): pa.int64(),
    ("int", "date"): pa.int32(),
}
Parsers = list[tuple[int, Callable[[str], Any]]]
# A chunk as read: psycopg2's rows (tenant first), or the same columns read by COPY.
Chunk: TypeAlias = "list[tuple[Any, ...]] | pa.Table"


def rows_of(chunk: Chunk) -> list[tuple[Any, ...]]:
    """A chunk's rows as psycopg2 would have fetched them."""
    if isinstance(chunk, pa.Table):
        return list(zip(*(c.to_pylist() for c in chunk.columns), strict=True))
    return chunk


def last_row(chunk: Chunk) -> tuple[Any, ...]:
    if isinstance(chunk, pa.Table):
        return tuple(c[len(c) - 1].as_py() for c in chunk.columns)
    return chunk[-1]


def tenants_of(chunk: Chunk) -> list[str]:
    """The chunk's tenants, each once, in order of appearance."""
    column = chunk.column(0).to_pylist() if isinstance(chunk, pa.Table) else [r[0] for r in chunk]
    return list(dict.fromkeys(column))


def arrow_type(avro: Any) -> pa.DataType | None:
    """The Arrow type that holds a column of Avro type ``avro`` as the snapshot reads it;
    None for a type the column path does not take."""
    kinds = [k for k in (avro if isinstance(avro, list) else [avro]) if k != "null"]
    if len(kinds) != 1:
        return None
    kind = kinds[0]
    if isinstance(kind, str):
        return _PRIMITIVE.get(kind)
    if isinstance(kind, dict):
        logical = kind.get("logicalType")
        if logical is None:
            return _PRIMITIVE.get(kind.get("type", ""))
        return _LOGICAL.get((kind.get("type", ""), logical))
    return None


class ColumnChunks:
    """Encodes the chunks of one table (built once per table per snapshot)."""

    def __init__(self, encoder: ColumnEncoder, table: CapturedTable, types: list[pa.DataType]):
        self.encoder, self.table, self.types = encoder, table, types
        self.key_at = table.columns.index(table.key[0])

    @classmethod
    def of(cls, schema: EventSchema, table: CapturedTable) -> ColumnChunks | None:
        """None when the table's events take the per-row path."""
        if not table.integer_key:
            return None
        after = next(f for f in plain_schema(schema.parsed)["fields"] if f["name"] == "after")
        record = next(k for k in after["type"] if k != "null")
        by_name = {f["name"]: arrow_type(f["type"]) for f in record["fields"]}
        types = [by_name.get(column) for column in table.columns]
        if set(by_name) != set(table.columns) or any(t is None for t in types):
            return None
        try:
            encoder = ColumnEncoder(schema)
        except UnsupportedSchemaError:
            return None
        return cls(encoder, table, [t for t in types if t is not None])

    def encode(
        self, chunk: Chunk, parsers: Parsers, envelope: dict[str, Any], kafka: KafkaSettings
    ) -> list[tuple[int, bytes, bytes]] | None:
        """(partition, key, value) of each of the chunk's events; None: take the per-row
        path. ``envelope`` holds the fields every event of the chunk shares."""
        try:
            tenants, after = self._columns(chunk, parsers)
            ids = after.field(self.key_at).cast(pa.int64())
            encoded = self.encoder.encode_rows(self._envelope(after, tenants, ids, envelope))
            # event_key's <tenant>/<entity_id>: an int64 prints as Python prints the int
            keys = pc.binary_join_element_wise(tenants, ids.cast(pa.string()), "/")
        except (pa.ArrowException, UnencodableError, TypeError, OverflowError):
            return None
        if keys.null_count:
            return None
        parts = partitions_of(tenants, ids, kafka).tolist()
        return list(zip(parts, keys.cast(pa.binary()).to_pylist(), encoded, strict=True))

    def _columns(self, chunk: Chunk, parsers: Parsers) -> tuple[pa.Array, pa.StructArray]:
        """The chunk's tenants, and its rows as the ``after`` struct."""
        names = list(self.table.columns)
        if isinstance(chunk, pa.Table):  # read by COPY: already typed columns
            arrays = [c.combine_chunks() for c in chunk.columns]
            return arrays[0], pa.StructArray.from_arrays(arrays[1:], names=names)
        columns = [list(c) for c in zip(*chunk, strict=True)]
        tenants, values = columns[0], columns[1:]
        for i, parse in parsers:
            values[i] = [None if v is None else parse(v) for v in values[i]]
        arrays = [pa.array(v, type=t) for v, t in zip(values, self.types, strict=True)]
        return pa.array(tenants, pa.string()), pa.StructArray.from_arrays(arrays, names=names)

    @staticmethod
    def _envelope(
        after: pa.StructArray, tenants: pa.Array, ids: pa.Array, shared: dict[str, Any]
    ) -> pa.StructArray:
        n = len(tenants)
        arrays = {
            "tenant_id": tenants,
            "entity_id": ids,
            **{name: pa.array([value] * n) for name, value in shared.items()},
            "after": after,
        }
        return pa.StructArray.from_arrays(list(arrays.values()), names=list(arrays))


def partitions_of(tenants: pa.Array, ids: pa.Array, kafka: KafkaSettings) -> npt.NDArray[np.int64]:
    """``partition_for`` of every (tenant, integer id), computed once per tenant and then
    for the ids at once (numpy's % of integers takes the divisor's sign, as Python's does)."""
    coded = tenants.dictionary_encode()
    names, count = coded.dictionary.to_pylist(), kafka.partitions
    base = np.array([tenant_base(t, count) for t in names], np.int64)
    width = np.array([min(kafka.spread_of(t), count) for t in names], np.int64)
    index = coded.indices.to_numpy(zero_copy_only=False)
    slots = np.remainder(ids.to_numpy(zero_copy_only=False), width[index])
    parts: npt.NDArray[np.int64] = (base[index] + slots) % count
    return parts
