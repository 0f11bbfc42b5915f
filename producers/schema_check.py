"""Checking that the source tables are shaped as the catalog says, before capturing.

Capture maps columns to the catalog's by name and type; a table it cannot capture fully
and faithfully is refused up front, naming the table, column or key, rather than found
out row by row while streaming. (``existing_table_problems`` holds a table against the
demo's Avro schemas, for restoring into the demo's tables.)
"""

from __future__ import annotations

from typing import Any

from sluiceway.common.catalog_check import catalog_problems
from sluiceway.common.codec import Codec
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.source import TABLES, Column, columns
from sluiceway.producers.tables import captured_tables

# information_schema's names for the SQL types the schemas map to
_CATALOG_NAMES = {"timestamptz": "timestamp with time zone"}
KEY = ("tenant_id", "id")


def _expected(codec: Codec, entity: str) -> dict[str, str]:
    cols = [Column("tenant_id", "text", False), *columns(codec, entity)]
    return {c.name: _CATALOG_NAMES.get(c.sql_type, c.sql_type) for c in cols}


def _actual_columns(cur: Any, table: str) -> dict[str, str]:
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    )
    return dict(cur.fetchall())


def _primary_key(cur: Any, table: str) -> tuple[str, ...]:
    cur.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary "
        "ORDER BY array_position(i.indkey, a.attnum)",
        (table,),
    )
    return tuple(r[0] for r in cur.fetchall())


def table_problems(
    table: str, expected: dict[str, str], actual: dict[str, str], key: tuple[str, ...]
) -> list[str]:
    """Everything wrong with one table (pure, so each rule is tested on its own)."""
    if not actual:
        return [f"table {table} does not exist (create it with: sluiceway source seed)"]
    problems = []
    if key != KEY:
        found = f"({', '.join(key)})" if key else "none"
        problems.append(f"table {table} has primary key {found}; expected (tenant_id, id)")
    for name, sql_type in actual.items():
        wanted = expected.get(name)
        if wanted is None:
            problems.append(f"column {table}.{name} ({sql_type}) is not in the Avro schema")
        elif sql_type != wanted:
            problems.append(
                f"column {table}.{name} has unsupported type {sql_type}; expected {wanted}"
            )
    problems += [
        f"column {table}.{n} is missing; expected {t}"
        for n, t in expected.items()
        if n not in actual
    ]
    return problems


def existing_table_problems(cur: Any, codec: Codec, entity: str) -> list[str] | None:
    """None when the entity's table does not exist, else what is wrong with it (``[]``: nothing)."""
    table = TABLES[entity]
    actual = _actual_columns(cur, table)
    if not actual:
        return None
    return table_problems(table, _expected(codec, entity), actual, _primary_key(cur, table))


def check_source_schema(conn: Any, codec: Codec) -> None:
    """Raise SourceSchemaError listing every way the live tables differ from the catalog
    (``sluiceway check``'s comparison), one line, before anything is read."""
    captured_tables(codec.catalog)  # an entity capture cannot read is refused first
    problems = catalog_problems(conn, codec.catalog)
    conn.rollback()
    if problems:
        raise SourceSchemaError("source tables differ from the catalog: " + "; ".join(problems))
