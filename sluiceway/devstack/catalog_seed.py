"""``sluiceway source seed --catalog FILE``: the tables of any catalog, created and filled.

The catalog's enums and domains become types; each entity a table (one per tenant schema
for schema-per-tenant entities) with the tenant column first, the columns with their types
and NOT NULL, the key as primary key and each reference as a foreign key (through the tenant
column too when the parent's key holds it, so a reference never crosses tenants). Rows come
from ``catalog_rows`` and are loaded with COPY, parents first.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql

from sluiceway.common.catalog import Catalog, CatalogError, Entity, Reference
from sluiceway.common.catalog_check import catalog_problems
from sluiceway.common.pgtypes import pg_type
from sluiceway.common.redact import pg_error_line
from sluiceway.common.settings import PostgresSettings
from sluiceway.devstack.catalog_rows import Row, RowMaker, Tenants, require_mapped, tenant_rows
from sluiceway.devstack.seed import copy_value
from sluiceway.producers.db import connect
from sluiceway.producers.errors import SourceSchemaError, SourceUnavailableError


@dataclass(frozen=True)
class CatalogSeedPlan:
    tenants: int
    rows_per_tenant: int
    seed: int


def _type(catalog: Catalog, name: str) -> sql.SQL:
    """A type name as SQL: ``pg_type`` accepts only mapped types and well-formed names."""
    pg_type(name, catalog.types)
    return sql.SQL(name)


def _create_types(cur: Any, catalog: Catalog) -> None:
    """Enums, then domains once their base exists; a type already there is kept."""
    pending = dict(catalog.types)
    while pending:
        waiting = len(pending)
        for name, user in list(pending.items()):
            if user.kind == "domain" and str(user.base).removesuffix("[]") in pending:
                continue  # its base is one of ours, not created yet
            del pending[name]
            pg_type(name, catalog.types)  # the name is checked before it reaches SQL
            cur.execute("SELECT to_regtype(%s)", (name,))
            if cur.fetchone()[0] is not None:
                continue
            if user.kind == "enum":
                labels = sql.SQL(", ").join(map(sql.Literal, user.values))
                create = sql.SQL("CREATE TYPE {} AS ENUM ({})").format(sql.SQL(name), labels)
            else:
                domain = sql.SQL("CREATE DOMAIN {} AS {}")
                create = domain.format(sql.SQL(name), _type(catalog, str(user.base)))
            cur.execute(create)
        if len(pending) == waiting:
            raise CatalogError(f"types {sorted(pending)} are domains over one another")


def table_id(tenants: Tenants, catalog: Catalog, entity: str, tenant: str) -> sql.Identifier:
    return sql.Identifier(*tenants.table(catalog, entity, tenant))


def _foreign_key(
    catalog: Catalog, entity: Entity, ref: Reference
) -> tuple[list[str], list[str]] | None:
    """(child columns, parent columns) of a reference's foreign key, or None when the
    database cannot hold it (a schema-per-tenant row pointing at a key with a tenant column,
    a table of every tenant pointing into one schema per tenant): the rows still only point
    at parents of their tenant."""
    parent = catalog.entity(ref.entity)
    if parent.tenant.schema_pattern is not None and entity.tenant.column is not None:
        return None
    tenant = parent.tenant.column
    if tenant is None or tenant not in parent.key:
        return list(ref.columns), list(parent.record_key)
    if entity.tenant.column is None:
        return None
    pairs = dict(zip(parent.record_key, ref.columns, strict=True))
    return [pairs.get(k, entity.tenant.column) for k in parent.key], list(parent.key)


def _table_sql(
    catalog: Catalog, name: str, tenants: Tenants, tenant: str, foreign_keys: bool = True
) -> Iterator[sql.Composable]:
    entity = catalog.entity(name)
    me = table_id(tenants, catalog, name, tenant)
    parts: list[sql.Composable] = []
    if entity.tenant.column is not None:
        tenant_type = _type(catalog, entity.tenant.type)
        parts.append(
            sql.SQL("{} {} NOT NULL").format(sql.Identifier(entity.tenant.column), tenant_type)
        )
    for column in entity.columns:
        null = sql.SQL("" if column.nullable else " NOT NULL")
        parts.append(
            sql.SQL("{} {}{}").format(
                sql.Identifier(column.name), _type(catalog, column.type), null
            )
        )
    parts.append(sql.SQL("PRIMARY KEY ({})").format(_idents(entity.key)))
    for i, ref in enumerate(entity.references if foreign_keys else ()):
        parent = table_id(tenants, catalog, ref.entity, tenant)
        pair = _foreign_key(catalog, entity, ref)
        if pair is not None:
            fk = sql.SQL("CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})")
            fk_name = sql.Identifier(f"{entity.table_name}_ref{i}_fkey")
            parts.append(fk.format(fk_name, _idents(pair[0]), parent, _idents(pair[1])))
    yield sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(me, sql.SQL(", ").join(parts))
    if entity.doc:
        yield sql.SQL("COMMENT ON TABLE {} IS {}").format(me, sql.Literal(entity.doc))
    for column in entity.columns:
        if column.doc:
            target = sql.SQL("{}.{}").format(me, sql.Identifier(column.name))
            yield sql.SQL("COMMENT ON COLUMN {} IS {}").format(target, sql.Literal(column.doc))


def _idents(names: Any) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def create_tables(
    cur: Any,
    catalog: Catalog,
    tenants: Tenants,
    only: Iterable[str] | None = None,
    foreign_keys: bool = True,
) -> None:
    """Schemas, types and tables of ``catalog`` (those already there are kept); ``only``
    some entities' tables, and without foreign keys when ``foreign_keys`` is False."""
    wanted = set(catalog.order if only is None else only)
    tables = [
        (name, tenant)
        for name in catalog.order
        if name in wanted
        for tenant in (
            tenants.texts if catalog.entity(name).tenant.schema_pattern else tenants.texts[:1]
        )
    ]
    # schemas first: the catalog's enums and domains usually live in its tables' schemas
    for name, tenant in tables:
        schema = tenants.table(catalog, name, tenant)[:-1]
        if schema:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(*schema)))
    _create_types(cur, catalog)
    for name, tenant in tables:
        for statement in _table_sql(catalog, name, tenants, tenant, foreign_keys):
            cur.execute(statement)


def delete_tenants(cur: Any, catalog: Catalog, tenants: Tenants) -> None:
    """Remove the tenants' rows, children first."""
    for name in reversed(catalog.order):
        column = catalog.entity(name).tenant.column
        if column is None:
            for tenant in tenants.texts:
                cur.execute(
                    sql.SQL("DELETE FROM {}").format(table_id(tenants, catalog, name, tenant))
                )
        else:
            delete = sql.SQL("DELETE FROM {} WHERE {}::text = ANY(%s)")
            target = table_id(tenants, catalog, name, tenants.texts[0])
            cur.execute(delete.format(target, sql.Identifier(column)), (list(tenants.texts),))


def _copy(cur: Any, target: sql.Identifier, maker: RowMaker, tenant: str, rows: list[Row]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    lead = [tenant] if maker.entity.tenant.column else []
    for row in rows:
        cells = [*lead, *maker.texts(row).values()]
        buf.write("\t".join(copy_value(c) for c in cells) + "\n")
    buf.seek(0)
    names = (
        [maker.entity.tenant.column, *maker.entity.column_names]
        if lead
        else maker.entity.column_names
    )
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(target, _idents(names))
    cur.copy_expert(copy, buf)


def _refuse_other_shapes(conn: Any, catalog: Catalog) -> None:
    """Tables and types already there must be as the catalog says (missing ones are made)."""
    clash = [
        line
        for line in catalog_problems(conn, catalog)
        if not line.endswith("table does not exist") and "no schema matches" not in line
    ]
    if clash:
        raise SourceSchemaError(
            f"the source already holds tables unlike the catalog: {'; '.join(clash)}; "
            "drop them or seed another database"
        )


def seed_catalog(
    pg: PostgresSettings,
    catalog: Catalog,
    plan: CatalogSeedPlan,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tenants, dict[str, int]]:
    """Create the catalog's tables, replace the plan's tenants' rows; rows per entity."""
    require_mapped(catalog)
    tenants = Tenants.numbered(catalog, plan.tenants)
    makers = {name: RowMaker(catalog, name) for name in catalog.order}
    counts = dict.fromkeys(catalog.order, 0)
    try:
        with closing(connect(pg)) as conn, conn, conn.cursor() as cur:
            _refuse_other_shapes(conn, catalog)
            create_tables(cur, catalog, tenants)
            delete_tenants(cur, catalog, tenants)
            for number, tenant in enumerate(tenants.texts, start=1):
                count = plan.rows_per_tenant
                rows = tenant_rows(makers, catalog.order, plan.seed, (number, tenant), count)
                for name in catalog.order:
                    target = table_id(tenants, catalog, name, tenant)
                    _copy(cur, target, makers[name], tenant, rows[name])
                    counts[name] += len(rows[name])
                if progress:
                    progress(1)
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        raise SourceUnavailableError(
            f"source PostgreSQL failed while seeding: {pg_error_line(exc)}"
        ) from exc
    except psycopg2.Error as exc:
        # e.g. a table of that name already there with other columns
        raise SourceSchemaError(f"source rejected the seed: {pg_error_line(exc)}") from exc
    return tenants, counts
