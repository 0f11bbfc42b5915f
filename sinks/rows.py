"""Change events -> lake rows -> Arrow. Pure.

Entity columns come from the event's ``after``; every row also carries the metadata
columns of the lake contract (docs/architecture.md). Entity columns are nullable even when
Avro says otherwise, because a delete has no ``after`` and keeps only its key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pyarrow as pa

from sluiceway.common.pgtypes import MAX_DECIMAL_PRECISION
from sluiceway.lake.errors import UnsupportedSchemaError

TIMESTAMP = pa.timestamp("us", tz="UTC")
METADATA_FIELDS: tuple[pa.Field, ...] = (
    pa.field("_tenant_id", pa.string(), nullable=False),
    pa.field("_op", pa.string(), nullable=False),
    pa.field("_deleted", pa.bool_(), nullable=False),
    pa.field("_position", pa.int64(), nullable=False),
    pa.field("_source_ts", TIMESTAMP, nullable=False),
    pa.field("_etl_id", pa.string(), nullable=False),
)
METADATA_NAMES = tuple(f.name for f in METADATA_FIELDS)

_PRIMITIVES: dict[str, pa.DataType] = {
    "long": pa.int64(),
    "int": pa.int32(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "double": pa.float64(),
    "float": pa.float32(),
    "bytes": pa.binary(),
}
_LOGICAL: dict[str, pa.DataType] = {
    "timestamp-micros": TIMESTAMP,
    "timestamp-millis": TIMESTAMP,
    "local-timestamp-micros": pa.timestamp("us"),
    "date": pa.date32(),
    "time-micros": pa.time64("us"),
    "uuid": pa.string(),
}
Row = dict[str, Any]


def arrow_type(avro_type: Any, column: str = "?") -> pa.DataType:
    """The Arrow type of one Avro field type; a ``["null", X]`` union maps to X."""
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        if len(branches) != 1:
            raise UnsupportedSchemaError(
                f'column {column!r} has union {avro_type}; expected ["null", <type>]'
            )
        return arrow_type(branches[0], column)
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical in _LOGICAL:
            return _LOGICAL[logical]
        if logical == "decimal":
            return _decimal(avro_type, column)
        if avro_type.get("type") == "array":
            return pa.list_(arrow_type(avro_type["items"], column))
        if avro_type.get("type") == "enum":
            return pa.string()
        return arrow_type(avro_type.get("type"), column)
    if isinstance(avro_type, str) and avro_type in _PRIMITIVES:
        return _PRIMITIVES[avro_type]
    raise UnsupportedSchemaError(
        f"column {column!r} has Avro type {avro_type!r}; expected a primitive, a logical "
        "type of docs/types.md, an enum, an array or a nullable union of those"
    )


def _decimal(avro_type: dict[str, Any], column: str) -> pa.DataType:
    precision, scale = int(avro_type.get("precision", 0)), int(avro_type.get("scale", 0))
    if not 0 < precision <= MAX_DECIMAL_PRECISION:
        raise UnsupportedSchemaError(
            f"column {column!r} is a decimal of precision {precision}; expected 1 to "
            f"{MAX_DECIMAL_PRECISION}"
        )
    if precision > 38:
        return pa.decimal256(precision, scale)
    return pa.decimal128(precision, scale)


def _type_name(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        return [_type_name(b) for b in avro_type if b != "null"]
    if isinstance(avro_type, dict):
        return avro_type.get("logicalType", avro_type.get("type"))
    return avro_type


def plain_values(record: dict[str, Any]) -> tuple[tuple[str, bool], ...]:
    """(column, is an array) of the uuid columns, whose values fastavro reads as
    ``uuid.UUID``: the lake holds their text."""
    found = []
    for f in record["fields"]:
        branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
        for b in branches:
            if isinstance(b, dict) and b.get("type") == "array":
                items = b["items"] if isinstance(b["items"], list) else [b["items"]]
                if any(_type_name(i) == "uuid" for i in items):
                    found.append((f["name"], True))
            elif _type_name(b) == "uuid":
                found.append((f["name"], False))
    return tuple(found)


def arrow_schema(
    record: dict[str, Any], catalog_types: Mapping[str, tuple[Any, pa.DataType]] | None = None
) -> pa.Schema:
    """The lake schema of a table: the entity's columns, then the metadata columns.
    ``catalog_types``: per column, its catalog Avro type and Arrow type (a smallint is an
    Avro int but an Arrow int16); a field of that very Avro type takes that Arrow type."""
    known = catalog_types or {}

    def kind(field: dict[str, Any]) -> pa.DataType:
        found = known.get(field["name"])
        if found is not None and found[0] == field["type"]:
            return found[1]
        return arrow_type(field["type"], field["name"])

    fields = [pa.field(f["name"], kind(f)) for f in record["fields"]]
    clash = {f.name for f in fields} & set(METADATA_NAMES)
    if clash:
        raise UnsupportedSchemaError(
            f"entity {record.get('name')!r} has columns {sorted(clash)} that clash with "
            "the lake's metadata columns"
        )
    return pa.schema([*fields, *METADATA_FIELDS])


def event_row(
    event: dict[str, Any],
    etl_id: str,
    columns: list[str],
    key: tuple[str, ...] = ("id",),
    uuids: tuple[tuple[str, bool], ...] = (),
) -> Row:
    """One lake row of a decoded event; ``columns`` are the entity's own column names,
    ``key`` its record key columns, ``uuids`` as ``plain_values`` gives them."""
    after = event.get("after")
    row: Row = dict.fromkeys(columns)
    if after is not None:
        row.update({c: after.get(c) for c in columns})
        for name, array in uuids:
            value = row[name]
            if value is not None:
                row[name] = [_text(v) for v in value] if array else str(value)
    elif event.get("key") is not None:  # the second envelope's typed key columns
        # a delete keeps its key so readers can apply it
        typed = event["key"].items()
        row.update({c: _text(v) if type(v) is UUID else v for c, v in typed if c in row})
    elif key[0] in row:
        row[key[0]] = event["entity_id"]
    row["_tenant_id"] = event["tenant_id"]
    row["_op"] = event["op"]
    row["_deleted"] = event["op"] == "d"
    row["_position"] = event["position"]
    row["_source_ts"] = event["source_ts"]
    row["_etl_id"] = etl_id
    return row


def _text(value: Any) -> Any:
    return None if value is None else str(value)


@dataclass
class ColumnBuffer:
    """Rows waiting for the next row group, with their Kafka offsets.

    Rows arrive one by one (``append``, held column-wise) or as Arrow tables decoded in a
    batch (``extend``); both keep their order, so offsets stay ascending.
    """

    schema: pa.Schema
    columns: dict[str, list[Any]] = field(default_factory=dict)
    offsets: list[int] = field(default_factory=list)
    tables: list[pa.Table] = field(default_factory=list)  # come before ``columns``' rows
    _rows: int = 0  # rows held in ``columns``

    def __post_init__(self) -> None:
        self.columns = {name: [] for name in self.schema.names}

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, row: Row, offset: int) -> None:
        for name, values in self.columns.items():
            values.append(row.get(name))
        self.offsets.append(offset)
        self._rows += 1

    def extend(self, rows: pa.Table, offsets: list[int]) -> None:
        """Buffer a table of rows (of ``schema``) with one offset per row."""
        self._seal()
        self.tables.append(rows)
        self.offsets.extend(offsets)

    def _seal(self) -> None:
        """Move the rows appended one by one into ``tables``, keeping their order."""
        if self._rows:
            self.tables.append(pa.Table.from_pydict(self.columns, schema=self.schema))
            self.columns = {name: [] for name in self.schema.names}
            self._rows = 0

    def drain(self) -> tuple[pa.Table, list[int]]:
        """The buffered rows as a table (and their offsets); the buffer is left empty."""
        self._seal()
        if len(self.tables) == 1:
            table = self.tables[0]
        elif self.tables:
            table = pa.concat_tables(self.tables)  # chunked: the Parquet writer takes it as is
        else:
            table = self.schema.empty_table()
        offsets = self.offsets
        self.tables = []
        self.offsets = []
        return table, offsets
