"""What a run writes where: table directories and lake schemas per writer schema. Pure.

Rows are routed by the fingerprint of the schema they were written with, so a schema
change mid-run closes the table's files (SCHEMA_CHANGE) instead of mixing columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from sluiceway.common.avro_batch import decodable
from sluiceway.common.catalog_schemas import entity_arrow_schema, entity_record
from sluiceway.common.codec import HEADER_LEN, Event, EventSchema
from sluiceway.common.entities import active_catalog
from sluiceway.common.errors import InvalidEventError
from sluiceway.common.runs import RunRecord
from sluiceway.lake import layout
from sluiceway.lake.errors import RunStateError
from sluiceway.sinks.rows import arrow_schema, plain_values


@dataclass(frozen=True)
class TableSchema:
    table: str
    schema_id: str  # hex fingerprint of the writer schema
    schema: pa.Schema
    columns: tuple[str, ...]  # the entity's own columns
    key: tuple[str, ...] = ("id",)  # the record key columns, which a delete's row keeps
    batch: bool = True  # whether the batch decoder reads every column exactly
    uuids: tuple[tuple[str, bool], ...] = ()  # rows.plain_values


@dataclass(frozen=True)
class RunPlan:
    etl_id: str
    tenants: frozenset[str]
    table_dirs: dict[str, str]
    schemas: dict[str, TableSchema]  # by schema_id
    full_export_date: str  # YYYY-MM-DD of the full export the run's chain builds on
    format: str = "parquet"  # the files' format: RunRecord.format, for RunWriter.file_format

    def learn(self, event_schema: EventSchema) -> None:
        """Route rows of another writer schema of a selected entity too: a schema version
        capture wrote after a change of its table (a file holds one schema, so its rows go
        to new files)."""
        if event_schema.entity in self.table_dirs:
            found = table_schema(event_schema.entity, event_schema)
            self.schemas.setdefault(found.schema_id, found)

    @property
    def schema_versions(self) -> dict[str, str]:
        return {s.table: s.schema_id for s in self.schemas.values()}

    def route(self, value: bytes, event: Event) -> TableSchema:
        """The table of a decoded event; InvalidEventError if the run did not ask for it."""
        found = self.schemas.get(bytes(value[2:HEADER_LEN]).hex())
        if found is None or found.table not in self.table_dirs:
            raise InvalidEventError(
                f"event of entity {event.get('entity')!r} is not selected by run {self.etl_id}"
            )
        if event.get("tenant_id") not in self.tenants:
            raise InvalidEventError(
                f"event of tenant {event.get('tenant_id')!r} is not selected by run {self.etl_id}"
            )
        return found


def table_dirs(record: RunRecord, full_date: date | datetime | None = None) -> dict[str, str]:
    """Each entity's directory; a delta needs the date of the full export it builds on."""
    if record.type == "full":
        return {
            t: layout.full_table_dir(record.export_date, t, record.etl_id) for t in record.entities
        }
    if full_date is None:
        raise RunStateError(
            f"run {record.etl_id} is a {record.type} run but the lake has no full export to "
            "build on; run a full export first"
        )
    return {
        t: layout.delta_table_dir(full_date, record.export_date, t, record.etl_id)
        for t in record.entities
    }


def _record_key(entity: str) -> tuple[str, ...]:
    found = active_catalog().entities.get(entity)
    return found.record_key if found is not None else ("id",)


def catalog_types(entity: str) -> dict[str, tuple[Any, pa.DataType]]:
    """Per column of ``entity`` in the active catalog: its Avro field type and Arrow type."""
    catalog = active_catalog()
    if entity not in catalog.entities:
        return {}
    record = entity_record(catalog, entity)
    arrow = entity_arrow_schema(catalog, entity)
    return {f["name"]: (f["type"], arrow.field(f["name"]).type) for f in record["fields"]}


def table_schema(table: str, event_schema: EventSchema) -> TableSchema:
    """Where and how rows of ``event_schema`` (a run-topic schema of ``table``) are written."""
    record_schema = event_schema.record
    return TableSchema(
        table=table,
        schema_id=event_schema.header[2:].hex(),
        schema=arrow_schema(record_schema, catalog_types(table)),
        columns=tuple(f["name"] for f in record_schema["fields"]),
        key=_record_key(table),
        batch=decodable(record_schema),
        uuids=plain_values(record_schema),
    )


def build_plan(
    record: RunRecord,
    writer_schemas: Mapping[str, EventSchema],
    tenants: Iterable[str],
    full_date: date | datetime | None = None,
) -> RunPlan:
    """``writer_schemas``: per entity, the schema the run's processor writes with;
    ``tenants``: the tenant ids rows carry (after any remap)."""
    schemas: dict[str, TableSchema] = {}
    for table in record.entities:
        if table not in writer_schemas:
            raise RunStateError(f"run {record.etl_id} selects unknown entity {table!r}")
        found = table_schema(table, writer_schemas[table])
        schemas[found.schema_id] = found
    return RunPlan(
        etl_id=record.etl_id,
        tenants=frozenset(tenants),
        table_dirs=table_dirs(record, full_date),
        schemas=schemas,
        full_export_date=f"{full_date or record.export_date:%Y-%m-%d}",
        format=record.format,
    )
