"""Arrow schemas from the Avro entity schemas, and events -> record batches."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from sluiceway.common.avro_batch import decodable
from sluiceway.common.catalog import load_catalog
from sluiceway.common.catalog_schemas import entity_arrow_schema, entity_record
from sluiceway.common.codec import Codec
from sluiceway.common.resources import example_catalog
from sluiceway.lake.errors import UnsupportedSchemaError
from sluiceway.sinks.rows import (
    METADATA_NAMES,
    ColumnBuffer,
    arrow_schema,
    arrow_type,
    event_row,
    plain_values,
)
from tests.catalogs import ENTITIES

TS = pa.timestamp("us", tz="UTC")
EXPECTED_METADATA = {
    "_tenant_id": pa.string(),
    "_op": pa.string(),
    "_deleted": pa.bool_(),
    "_position": pa.int64(),
    "_source_ts": TS,
    "_etl_id": pa.string(),
}
CODEC = Codec()


@pytest.mark.parametrize("entity", ENTITIES)
def test_schema_has_entity_columns_then_metadata(entity: str) -> None:
    record = CODEC.schemas[entity].record
    schema = arrow_schema(record)
    own = [f["name"] for f in record["fields"]]
    assert schema.names == [*own, *METADATA_NAMES]
    for name, kind in EXPECTED_METADATA.items():
        assert schema.field(name).type == kind
    assert schema.field("id").type == pa.int64()
    assert schema.field("created").type == TS


def test_issue_column_types() -> None:
    schema = arrow_schema(CODEC.schemas["issue"].record)
    assert schema.field("key").type == pa.string()
    assert schema.field("story_points").type == pa.float64()
    assert schema.field("due_date").type == pa.date32()
    assert schema.field("resolution_date").type == TS
    assert schema.field("assignee_id").type == pa.int64()
    assert pa.types.is_boolean(arrow_schema(CODEC.schemas["user"].record).field("active").type)


def test_avro_type_mapping() -> None:
    assert arrow_type(["null", "int"]) == pa.int32()
    assert arrow_type({"type": "int", "logicalType": "date"}) == pa.date32()
    assert arrow_type({"type": "enum", "name": "E", "symbols": ["a"]}) == pa.string()
    assert arrow_type({"type": "array", "items": ["null", "long"]}, "tags") == pa.list_(pa.int64())
    with pytest.raises(UnsupportedSchemaError):
        arrow_type(["null", "long", "string"], "x")
    with pytest.raises(UnsupportedSchemaError, match="precision 90"):
        arrow_type({"type": "bytes", "logicalType": "decimal", "precision": 90}, "d")


def test_every_mapped_type_lands_as_the_catalog_arrow_schema_says() -> None:
    """The sink's Arrow type of each Avro field is the type pgtypes maps the PostgreSQL type
    to (docs/types.md), for every type of the helpdesk example; without the catalog's types
    only the Avro-less distinctions (smallint, real) fall back to int32 and float32."""
    catalog = load_catalog(example_catalog("helpdesk"))
    for entity in catalog.names:
        record = entity_record(catalog, entity)
        arrow = entity_arrow_schema(catalog, entity)
        types = {f["name"]: (f["type"], arrow.field(f["name"]).type) for f in record["fields"]}
        lake = arrow_schema(record, types)
        expected = entity_arrow_schema(catalog, entity)
        assert [(f.name, f.type) for f in expected] == [
            (f.name, lake.field(f.name).type) for f in expected
        ]


def test_uuid_values_land_as_text_and_every_type_fills_a_row_group() -> None:
    record = {"type": "record", "name": "R", "fields": [
        {"name": "id", "type": "long"},
        {"name": "ref", "type": ["null", {"type": "string", "logicalType": "uuid"}]},
        {"name": "refs", "type": ["null", {"type": "array", "items": [
            "null", {"type": "string", "logicalType": "uuid"}]}]},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                    "precision": 12, "scale": 2}},
        {"name": "at", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
    ]}  # fmt: skip
    assert decodable(record)  # polars reads each of these in a batch
    uuids = plain_values(record)
    assert uuids == (("ref", False), ("refs", True))
    one = uuid.UUID("12345678-1234-5678-1234-567812345678")
    after = {"id": 1, "ref": one, "refs": [one, None], "amount": Decimal("-0.50"),
             "at": time(1, 2, 3, 4), "local": datetime(1901, 2, 3, 4, 5, 6, 7)}  # fmt: skip
    event = {"tenant_id": "7", "entity_id": 1, "op": "u", "position": 5,
             "source_ts": datetime(2026, 1, 1, tzinfo=UTC), "after": after}  # fmt: skip
    names = [f["name"] for f in record["fields"]]
    row = event_row(event, "e1", names, ("id",), uuids)
    assert row["ref"] == str(one) and row["refs"] == [str(one), None]
    buffer = ColumnBuffer(arrow_schema(record))
    buffer.append(row, 0)
    table, _ = buffer.drain()
    assert table.to_pylist()[0]["amount"] == Decimal("-0.50")
    gone = event_row({**event, "op": "d", "after": None, "entity_id": 9}, "e1", names, ("id",))
    assert gone["id"] == 9


def test_metadata_name_clash_is_rejected() -> None:
    record = {"name": "X", "fields": [{"name": "_op", "type": "string"}]}
    with pytest.raises(UnsupportedSchemaError):
        arrow_schema(record)


def issue_event(i: int, op: str = "c") -> dict[str, Any]:
    moment = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    after = {
        "id": i,
        "key": f"P-{i}",
        "project_id": 1,
        "project_key": "P",
        "issue_type": "Bug",
        "summary": f"summary {i}",
        "description": None if i % 2 else "x" * i,
        "environment": None,
        "creator_id": 7,
        "reporter_id": None,
        "assignee_id": 9,
        "parent_id": None,
        "status": "Open",
        "status_category": "new",
        "priority": "High",
        "resolution": None,
        "labels": "a b",
        "story_points": 1.5,
        "original_estimate_seconds": None,
        "time_spent_seconds": 60,
        "created": moment,
        "updated": moment,
        "due_date": date(2026, 5, 1),
        "resolution_date": None,
    }
    return {
        "tenant_id": "t1",
        "entity": "issue",
        "entity_id": i,
        "op": op,
        "position": 1000 + i,
        "source_ts": moment,
        "snapshot": op == "r",
        "after": None if op == "d" else after,
    }


def test_events_round_trip_through_a_record_batch() -> None:
    record = CODEC.schemas["issue"].record
    schema = arrow_schema(record)
    columns = [f["name"] for f in record["fields"]]
    events = [CODEC.decode(CODEC.encode(issue_event(i, op))) for i, op in enumerate("rcud")]
    buffer = ColumnBuffer(schema)
    for offset, event in enumerate(events):
        buffer.append(event_row(event, "E1", columns), offset)
    table, offsets = buffer.drain()
    assert len(buffer) == 0 and offsets == [0, 1, 2, 3]
    assert table.schema == schema
    rows = table.to_pylist()
    for event, row in zip(events[:3], rows[:3], strict=True):
        assert {c: row[c] for c in columns} == event["after"]
        assert row["_deleted"] is False and row["_op"] == event["op"]
        assert row["_position"] == event["position"] and row["_source_ts"] == event["source_ts"]
        assert row["_tenant_id"] == "t1" and row["_etl_id"] == "E1"
    deleted = rows[3]
    assert deleted["_deleted"] is True and deleted["_op"] == "d"
    assert deleted["id"] == 3 and deleted["key"] is None
    batch = table.to_batches()[0]
    assert isinstance(batch, pa.RecordBatch) and batch.num_rows == 4


@pytest.mark.parametrize(
    "avro_type",
    [
        {"type": "enum", "name": "E", "symbols": ["a"]},
        ["null", {"type": "bytes", "logicalType": "decimal", "precision": 39, "scale": 2}],
        {"type": "array", "items": ["null", {"type": "enum", "name": "E", "symbols": ["a"]}]},
        {"type": "fixed", "name": "F", "size": 16, "logicalType": "decimal", "precision": 9},
        "R",  # a named type defined elsewhere in the schema
        {"type": "map", "values": "long"},
    ],
)
def test_types_polars_cannot_read_are_left_to_fastavro(avro_type: Any) -> None:
    """polars panics on an enum or a decimal of more than 38 digits; a batch of such a
    schema must not even be tried."""
    record = {"type": "record", "name": "R", "fields": [{"name": "c", "type": avro_type}]}
    assert not decodable(record)
    near = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 2}
    assert decodable({**record, "fields": [{"name": "c", "type": near}]})
