"""The Jira-shaped source schema, derived from the Avro entity schemas.

The Avro records in ``schemas/`` are the single source of truth for columns: the source
tables carry exactly those columns plus ``tenant_id``, so capture never has to map names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from producers.errors import SourceSchemaError
from sluiceway.codec import Codec
from sluiceway.settings import ENTITIES

# "user" is reserved in SQL, so tables are named in the plural.
TABLES: dict[str, str] = {e: f"{e}s" for e in ENTITIES}

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


def create_table_sql(codec: Codec, entity: str) -> str:
    cols = ["tenant_id text NOT NULL"] + [
        f"{c.name} {c.sql_type}{'' if c.nullable else ' NOT NULL'}" for c in columns(codec, entity)
    ]
    body = ",\n  ".join([*cols, "PRIMARY KEY (tenant_id, id)"])
    return f"CREATE TABLE IF NOT EXISTS {TABLES[entity]} (\n  {body}\n)"


def schema_sql(codec: Codec) -> list[str]:
    """DDL for every table; REPLICA IDENTITY FULL so deletes carry whole rows."""
    statements: list[str] = []
    for entity in ENTITIES:
        statements.append(create_table_sql(codec, entity))
        statements.append(f"ALTER TABLE {TABLES[entity]} REPLICA IDENTITY FULL")
    return statements


def require_tables(cur: Any) -> None:
    """One line naming the missing tables, for tools that write or read the source."""
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    present = {r[0] for r in cur.fetchall()}
    missing = [t for t in TABLES.values() if t not in present]
    if missing:
        raise SourceSchemaError(
            f"source tables {', '.join(missing)} do not exist; "
            "create them first with: sluiceway source seed"
        )
