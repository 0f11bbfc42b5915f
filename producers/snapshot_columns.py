"""A snapshot chunk's events encoded column by column. Pure.

fastavro encodes one event at a time, about half of the snapshot's time. A chunk's rows
all share one envelope but their row values, so the chunk is turned into Arrow columns
and encoded at once by the column encoder the processor uses
(sluiceway/common/avro_encode.py): byte for byte what ``Codec.encode`` writes
(tests/unit/test_snapshot_columns.py compares both on random rows).

It covers tables keyed by one column (an integer, a text or a uuid: the events' identity is
then computed as record_keys does, producers/snapshot_keys.py) whose columns are all of the
scalar types of docs/types.md: the Avro long, int, string, boolean, double, float, bytes,
timestamp-micros, date, uuid, time-micros, local-timestamp-micros and decimal. uuid,
numeric(p,s), real, bytea, time and timestamp columns are read as text and turned into Arrow
columns at once (producers/snapshot_text.py). Arrays stay on the per-row path: psycopg2's
array parser, which reads the quoting of PostgreSQL's array output, has no columnar
counterpart; so do composite keys.
Any other table, or a chunk holding a value its column's type cannot hold (or that the
mapping refuses: NaN in a numeric(p,s), ``infinity``, ``24:00:00``...), takes the per-row
path, which says what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sluiceway.common.avro_encode import (
    BINARY,
    ColumnEncoder,
    UnencodableError,
    UnsupportedSchemaError,
)
from sluiceway.common.codec import EventSchema, plain_schema
from sluiceway.common.partitioning import tenant_base
from sluiceway.common.settings import KafkaSettings
from sluiceway.producers import snapshot_text as text
from sluiceway.producers.snapshot_keys import key_texts, text_slots
from sluiceway.producers.tables import CapturedTable

# Per Avro type: the Arrow type the encoder is given, and how the column's text becomes it
# (as_read: the snapshot reads the value itself, not text to be turned into it).
Reader = tuple[pa.DataType, text.Converter]
_PRIMITIVE: dict[str, Reader] = {
    "long": (pa.int64(), text.as_read), "int": (pa.int32(), text.as_read),
    "string": (pa.string(), text.as_read), "boolean": (pa.bool_(), text.as_read),
    "double": (pa.float64(), text.as_read), "float": (pa.float32(), text.real),
    "bytes": (BINARY, text.bytea),
}  # fmt: skip
# timestamptz and date are read as the integers Avro stores (snapshot.read_as).
_LOGICAL: dict[tuple[str, str], Reader] = {
    ("long", "timestamp-micros"): (pa.int64(), text.as_read),
    ("int", "date"): (pa.int32(), text.as_read),
    ("string", "uuid"): (pa.string(), text.uuid),
    ("long", "time-micros"): (pa.int64(), text.time_of_day),
    ("long", "local-timestamp-micros"): (pa.timestamp("us"), text.timestamp),
}
_MAX_DECIMAL128 = 38
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


def reader(avro: Any) -> Reader | None:
    """How the column path holds a column of Avro type ``avro`` and gets it from what the
    snapshot reads; None for a type the column path does not take."""
    kinds = [k for k in (avro if isinstance(avro, list) else [avro]) if k != "null"]
    if len(kinds) != 1:
        return None
    kind = kinds[0]
    if isinstance(kind, str):
        return _PRIMITIVE.get(kind)
    if not isinstance(kind, dict):
        return None
    base, logical = kind.get("type", ""), kind.get("logicalType")
    if logical is None:
        return _PRIMITIVE.get(base)
    if (base, logical) == ("bytes", "decimal"):
        precision, scale = kind["precision"], kind.get("scale", 0)
        wide = precision > _MAX_DECIMAL128
        held = pa.decimal256(precision, scale) if wide else pa.decimal128(precision, scale)
        return held, text.decimal(held)
    return _LOGICAL.get((base, logical))


class ColumnChunks:
    """Encodes the chunks of one table (built once per table per snapshot)."""

    def __init__(self, encoder: ColumnEncoder, table: CapturedTable, readers: list[Reader]):
        self.encoder, self.table = encoder, table
        self.types = [held for held, _ in readers]
        # columns read as text that the column path turns into their Arrow type at once
        self.from_text = {i: c for i, (_, c) in enumerate(readers) if c is not text.as_read}
        self.key_at = table.columns.index(table.key[0])

    @property
    def read_types(self) -> list[pa.DataType]:
        """Each column's Arrow type as read (text for those turned into their type here)."""
        return [pa.string() if i in self.from_text else t for i, t in enumerate(self.types)]

    @classmethod
    def of(cls, schema: EventSchema, table: CapturedTable) -> ColumnChunks | None:
        """None when the table's events take the per-row path."""
        if len(table.key) != 1:
            return None
        after = next(f for f in plain_schema(schema.parsed)["fields"] if f["name"] == "after")
        record = next(k for k in after["type"] if k != "null")
        by_name = {f["name"]: reader(f["type"]) for f in record["fields"]}
        readers = [by_name.get(column) for column in table.columns]
        if set(by_name) != set(table.columns) or any(r is None for r in readers):
            return None
        key_type = readers[table.columns.index(table.key[0])]
        if not table.integer_key and (key_type is None or key_type[0] != pa.string()):
            return None  # key_texts reads text (record_keys allows only text and uuid keys)
        try:
            encoder = ColumnEncoder(schema)
        except UnsupportedSchemaError:
            return None
        return cls(encoder, table, [r for r in readers if r is not None])

    def encode(
        self, chunk: Chunk, parsers: Parsers, envelope: dict[str, Any], kafka: KafkaSettings
    ) -> list[tuple[int, bytes, bytes]] | None:
        """(partition, key, value) of each of the chunk's events; None: take the per-row
        path. ``envelope`` holds the fields every event of the chunk shares."""
        try:
            tenants, after = self._columns(chunk, parsers)
            ids, identity = self._identity(after)
            encoded = self.encoder.encode_rows(self._envelope(after, tenants, identity, envelope))
            # event_key's <tenant>/<entity_id>: an int64 prints as Python prints the int
            keys = pc.binary_join_element_wise(tenants, ids.cast(pa.string()), "/")
        except (pa.ArrowException, UnencodableError, TypeError, OverflowError):
            return None
        if keys.null_count:
            return None
        slots = ids.to_numpy(zero_copy_only=False) if self.table.integer_key else text_slots(ids)
        parts = partitions_of(tenants, slots, kafka).tolist()
        return list(zip(parts, keys.cast(pa.binary()).to_pylist(), encoded, strict=True))

    def _identity(self, after: pa.StructArray) -> tuple[pa.Array, dict[str, pa.Array]]:
        """The events' ``entity_id`` and the envelope fields naming the row (``entity_id``,
        and the typed ``key`` of the second envelope)."""
        column = after.field(self.key_at)
        if self.table.integer_key:
            ids = column.cast(pa.int64())
            return ids, {"entity_id": ids}
        ids = key_texts(column)
        key = pa.StructArray.from_arrays([column], names=[self.table.key[0]])
        return ids, {"entity_id": ids, "key": key}

    def _columns(self, chunk: Chunk, parsers: Parsers) -> tuple[pa.Array, pa.StructArray]:
        """The chunk's tenants, and its rows as the ``after`` struct."""
        if isinstance(chunk, pa.Table):  # read by COPY: typed columns, and texts to convert
            arrays = [c.combine_chunks() for c in chunk.columns]
            tenants, values = arrays[0], arrays[1:]
        else:
            columns = [list(c) for c in zip(*chunk, strict=True)]
            tenants, values = pa.array(columns[0], pa.string()), self._arrays(columns[1:], parsers)
        for i, convert in self.from_text.items():
            values[i] = convert(values[i])
        return tenants, pa.StructArray.from_arrays(values, names=list(self.table.columns))

    def _arrays(self, columns: list[list[Any]], parsers: Parsers) -> list[pa.Array]:
        """psycopg2's columns as Arrow, in their read types (texts parsed one by one only
        where no conversion of the whole column does it)."""
        for i, parse in parsers:
            if i not in self.from_text:
                columns[i] = [None if v is None else parse(v) for v in columns[i]]
        return [pa.array(v, type=t) for v, t in zip(columns, self.read_types, strict=True)]

    @staticmethod
    def _envelope(
        after: pa.StructArray, tenants: pa.Array, identity: dict[str, pa.Array],
        shared: dict[str, Any],
    ) -> pa.StructArray:  # fmt: skip
        n = len(tenants)
        arrays = {
            "tenant_id": tenants,
            **identity,
            **{name: pa.array([value] * n) for name, value in shared.items()},
            "after": after,
        }
        return pa.StructArray.from_arrays(list(arrays.values()), names=list(arrays))


def partitions_of(
    tenants: pa.Array, slots: npt.NDArray[np.int64], kafka: KafkaSettings
) -> npt.NDArray[np.int64]:
    """``partition_for`` of every (tenant, ``id_slot`` of the id), computed once per tenant
    and then for the ids at once (numpy's % of integers takes the divisor's sign, as
    Python's does)."""
    coded = tenants.dictionary_encode()
    names, count = coded.dictionary.to_pylist(), kafka.partitions
    base = np.array([tenant_base(t, count) for t in names], np.int64)
    width = np.array([min(kafka.spread_of(t), count) for t in names], np.int64)
    index = coded.indices.to_numpy(zero_copy_only=False)
    parts: npt.NDArray[np.int64] = (base[index] + np.remainder(slots, width[index])) % count
    return parts
