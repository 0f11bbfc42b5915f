"""The captured tables that exist in the database, schema-per-tenant ones included.

An entity with a tenant column has one table. A schema-per-tenant entity
(``tenant: {schema_pattern: ...}``) has one table of its name in every schema matching the
pattern, and tenants come and go while capture runs, so its tables are listed from the
database when needed (the snapshot, the publication) rather than fixed at start.

Every query here reads ``pg_class`` and ``pg_publication_rel`` with plain SQL, so inside the
snapshot the slot exported it sees the catalog as of the slot's consistent point (a
function such as ``pg_get_publication_tables`` would read the latest catalog instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluiceway.common.catalog import Catalog
from sluiceway.producers.tables import CapturedTable, bind, captured_tables

TableLister = Callable[[Any, Catalog], list[CapturedTable]]

_TABLE_SCHEMAS = (
    "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = %s AND c.relkind IN ('r', 'p') ORDER BY 1"
)
_PUBLISHED = (
    "SELECT n.nspname || '.' || c.relname FROM pg_publication p "
    "JOIN pg_publication_rel r ON r.prpubid = p.oid JOIN pg_class c ON c.oid = r.prrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = %s"
)
# PostgreSQL 15+: FOR TABLES IN SCHEMA publishes every table of a schema, new ones too
_PUBLISHED_SCHEMAS = (
    "SELECT n.nspname || '.' || c.relname FROM pg_publication p "
    "JOIN pg_publication_namespace s ON s.pnpubid = p.oid "
    "JOIN pg_class c ON c.relnamespace = s.pnnspid AND c.relkind IN ('r', 'p') "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = %s"
)


def live_tables(cur: Any, catalog: Catalog) -> list[CapturedTable]:
    """Every captured table: each entity's with a tenant column (checked at start), and a
    schema-per-tenant entity's in every matching schema that has it, in schema order."""
    found: list[CapturedTable] = []
    for table in captured_tables(catalog).values():
        if not table.per_schema:
            found.append(table)
            continue
        cur.execute(_TABLE_SCHEMAS, (table.name,))
        for (schema,) in cur.fetchall():
            bound = bind(table, schema, catalog)
            if bound is not None:
                found.append(bound)
    return found


def published(cur: Any, publication: str) -> set[str] | None:
    """``schema.table`` of every table publication ``publication`` publishes; None when it
    publishes all tables (FOR ALL TABLES: a new table is published from its first write)."""
    cur.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s", (publication,))
    row = cur.fetchone()
    if row is not None and row[0]:
        return None
    cur.execute(_PUBLISHED, (publication,))
    names = {r[0] for r in cur.fetchall()}
    cur.execute("SELECT to_regclass('pg_catalog.pg_publication_namespace') IS NOT NULL")
    if cur.fetchone()[0]:
        cur.execute(_PUBLISHED_SCHEMAS, (publication,))
        names |= {r[0] for r in cur.fetchall()}
    return names


def published_tables(publication: str) -> TableLister:
    """The snapshot's tables under pgoutput: a schema-per-tenant table is read only when
    the publication had it at the snapshot's moment. The stream has its changes from that
    moment on; one added later is read when it is added (``producers/new_tables.py``), so
    no row is read twice with a delete between the two reads."""

    def tables(cur: Any, catalog: Catalog) -> list[CapturedTable]:
        names = published(cur, publication)
        return [
            t
            for t in live_tables(cur, catalog)
            if not t.per_schema or names is None or t.qualified in names
        ]

    return tables


def has_per_schema(catalog: Catalog) -> bool:
    return any(t.per_schema for t in captured_tables(catalog).values())
