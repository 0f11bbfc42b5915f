"""The Jira-shaped source schema, derived from the Avro entity schemas.

The Avro records in ``schemas/`` are the single source of truth for columns: the source
tables carry exactly those columns plus ``tenant_id``, so capture never has to map names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from sluiceway.common.codec import Codec
from sluiceway.common.entities import active_catalog
from sluiceway.producers.errors import SourceSchemaError


def source_tables() -> dict[str, str]:
    """Entity -> table name (in the current schema) of every entity of the active catalog.

    Read when asked, not at import: every command imports this module, and a configured
    catalog that does not exist yet (``source discover`` is about to write it) must not stop
    them."""
    catalog = active_catalog()
    return {name: catalog.entity(name).table_name for name in catalog.names}


_SQL_TYPES = {
    "long": "bigint",
    "int": "integer",
    "string": "text",
    "boolean": "boolean",
    "double": "double precision",
    "timestamp-micros": "timestamptz",
    "date": "date",
}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    nullable: bool


def _column(field: dict[str, Any]) -> Column:
    avro_type = field["type"]
    nullable = isinstance(avro_type, list)
    if nullable:
        avro_type = next(t for t in avro_type if t != "null")
    if isinstance(avro_type, dict):
        avro_type = avro_type.get("logicalType", avro_type["type"])
    return Column(field["name"], _SQL_TYPES[avro_type], nullable)


def columns(codec: Codec, entity: str) -> list[Column]:
    return [_column(f) for f in codec.schemas[entity].record["fields"]]


def table_name(entity: str) -> sql.Identifier:
    """The entity's source table, quoted: every statement names tables and columns this way."""
    return sql.Identifier(active_catalog().entity(entity).table_name)


def column_list(names: Iterable[str]) -> sql.Composed:
    """``a, b, c`` as quoted identifiers."""
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def create_table_sql(codec: Codec, entity: str) -> sql.Composed:
    cols = [sql.SQL("tenant_id text NOT NULL")] + [
        sql.SQL("{} {}").format(
            sql.Identifier(c.name), sql.SQL(c.sql_type + ("" if c.nullable else " NOT NULL"))
        )
        for c in columns(codec, entity)
    ]
    body = sql.SQL(",\n  ").join([*cols, sql.SQL("PRIMARY KEY (tenant_id, id)")])
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} (\n  {}\n)").format(table_name(entity), body)


def replica_identity_sql(entity: str) -> sql.Composed:
    """REPLICA IDENTITY FULL, so deletes carry whole rows (capture needs them)."""
    return sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(table_name(entity))


def schema_sql(codec: Codec) -> list[sql.Composed]:
    """DDL for every table."""
    statements: list[sql.Composed] = []
    for entity in source_tables():
        statements.append(create_table_sql(codec, entity))
        statements.append(replica_identity_sql(entity))
    return statements


def require_tables(cur: Any) -> None:
    """One line naming the missing tables, for tools that write or read the source."""
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    present = {r[0] for r in cur.fetchall()}
    missing = [t for t in source_tables().values() if t not in present]
    if missing:
        raise SourceSchemaError(
            f"source tables {', '.join(missing)} do not exist; "
            "create them first with: sluiceway source seed"
        )
