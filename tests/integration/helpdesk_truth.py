"""The help desk example as the integration tests run it, and its source read as the truth.

Its schema-per-tenant entities (articles, votes) are left out (test_tenant_schemas.py
captures them). Kept apart from the test modules so the capture crash tests can run on the
help desk without importing test_helpdesk (which imports test_capture)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

import psycopg2
import yaml
from psycopg2 import sql

from sluiceway.common.catalog import Catalog, Column, parse_catalog
from sluiceway.common.codec import event_key
from sluiceway.common.pgtypes import column_type
from sluiceway.common.record_keys import integer_keyed, key_text
from sluiceway.common.resources import example_catalog
from sluiceway.common.settings import PostgresSettings

COLUMN_TENANTS = ("customer", "ticket", "reply", "attachment")
# Tables whose tenant column is outside their primary key: a delete under the default
# replica identity carries the key alone, not the tenant. Replies keep the default.
OUTSIDE_KEY = ("customers", "tickets", "attachments")


def write_catalog(path: Path) -> Catalog:
    """The help desk example without its schema-per-tenant entities."""
    document = yaml.safe_load(example_catalog("helpdesk").read_text(encoding="utf-8"))
    document["entities"] = {n: e for n, e in document["entities"].items() if n in COLUMN_TENANTS}
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return parse_catalog(document, str(path))


def full_identity(pg: PostgresSettings) -> None:
    """Deletes on tables whose tenant column is outside the key must carry the tenant."""
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        for table in OUTSIDE_KEY:
            cur.execute(f"ALTER TABLE public.{table} REPLICA IDENTITY FULL")
    conn.close()


def source_rows(pg: PostgresSettings, catalog: Catalog, entity: str) -> dict[tuple[Any, ...], Any]:
    """(tenant text, record key texts...) -> the row's cells as PostgreSQL prints them."""
    found = catalog.entity(entity)
    tenant = found.tenant.column
    assert tenant is not None
    names = [tenant, *found.column_names]
    cells = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {0} IS NULL THEN NULL ELSE format('%s', {0}) END").format(
            sql.Identifier(n)
        )
        for n in names
    )
    query = sql.SQL("SELECT {} FROM {}").format(cells, sql.Identifier(*found.table.split(".")))
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(query)
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    conn.close()
    return {(r[tenant], *(r[k] for k in found.record_key)): r for r in rows}


def typed_keys(
    pg: PostgresSettings, catalog: Catalog, tenants: Collection[str]
) -> dict[str, set[tuple[Any, ...]]]:
    """Per entity, (tenant, *record key) of every source row of ``tenants``, typed as the
    lake holds them (a uuid as its text, an integer as an int)."""
    out: dict[str, set[tuple[Any, ...]]] = {}
    for entity in catalog.names:
        found = catalog.entity(entity)
        kinds = [column_type(found.column(c), catalog.types) for c in found.record_key]
        out[entity] = {
            (tenant, *(k.parse_text(t) for k, t in zip(kinds, key, strict=True)))
            for (tenant, *key) in source_rows(pg, catalog, entity)
            if tenant in tenants
        }
    return out


def plain(value: Any) -> Any:
    """A value comparable by ``==``: NaN is not equal to itself."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def event_cells(after: dict[str, Any]) -> dict[str, Any]:
    """An event's ``after`` as ``source_state`` gives the row: fastavro decodes a uuid
    column to ``uuid.UUID``, the type parses its text form to ``str``."""
    return {k: str(v) if isinstance(v, uuid.UUID) else plain(v) for k, v in after.items()}


def kafka_key(catalog: Catalog, entity: str, tenant: str, key: list[Any]) -> bytes:
    """The Kafka key of a row from its tenant and record key values (texts or a ledger's)."""
    if integer_keyed(catalog, entity):
        return event_key(tenant, str(key[0]))
    return event_key(tenant, key_text(key))


SPECIAL_NUMBERS = frozenset({"NaN", "Infinity", "-Infinity"})


def _numeric(column: Column, catalog: Catalog) -> bool:
    """Whether wal2json prints the column as a JSON number (real, double, numeric)."""
    avro = column_type(column, catalog.types).avro
    return avro in ("float", "double") or column.type.startswith(("numeric", "decimal"))


def source_state(
    pg: PostgresSettings, catalog: Catalog, plugin: str
) -> dict[tuple[str, bytes], Any]:
    """(entity, Kafka key) -> the row's catalog columns as the change events carry them.

    wal2json (2.5, the stack's, included) prints NaN and ±Infinity of numeric columns as
    JSON null, so capture cannot tell them from NULL: documented in docs/your-database.md,
    and expected so here for that plugin."""
    state: dict[tuple[str, bytes], Any] = {}
    for entity in catalog.names:
        columns = catalog.entity(entity).columns
        kinds = {c.name: column_type(c, catalog.types) for c in columns}
        nulled = {c.name for c in columns if plugin == "wal2json" and _numeric(c, catalog)}
        for (tenant, *key), row in source_rows(pg, catalog, entity).items():
            values = {
                n: None if row[n] is None or (n in nulled and row[n] in SPECIAL_NUMBERS)
                else plain(k.parse_text(row[n]))
                for n, k in kinds.items()
            }  # fmt: skip
            state[entity, kafka_key(catalog, entity, tenant, key)] = values
    return state


def export_tenants(
    cli: Any, tmp_path: Path, lake: Path, run_type: str, tenants: tuple[str, ...]
) -> dict[str, Any]:
    """A run of ``tenants`` to ``lake`` from a spec file, waited for; its summary."""
    spec = tmp_path / f"{run_type}.yaml"
    spec.write_text(f"tenants: {list(tenants)}\ndestination: {lake}\ntype: {run_type}\n")
    done: dict[str, Any] = cli.json("export", "start", "--spec", str(spec), "--wait", timeout=300)
    return done
