"""Restoring a backup into PostgreSQL: the catalog's tables, one transaction.

Rows go back into the tables the catalog names (``schema.table``), the lake's
``_tenant_id`` into the entity's tenant column; each value is cast to its column's type
as ``sluiceway.common.pgtypes`` says (docs/types.md, "Restore"). A missing table is created
as the catalog describes it (types, schema and primary key; no foreign keys, so a partial
backup loads); an existing one must match the catalog. Every check (tables, rows already
there) runs before the first write, and everything is written in one transaction: a
failed restore leaves the target as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from sluiceway.common.catalog import Catalog, Entity
from sluiceway.common.catalog_check import entity_problems
from sluiceway.common.codec import Codec
from sluiceway.common.entities import load_order
from sluiceway.common.errors import RestoreError
from sluiceway.common.pgtypes import column_type, pg_type
from sluiceway.common.redact import pg_error_line
from sluiceway.common.settings import S3Settings
from sluiceway.devstack.catalog_rows import Tenants
from sluiceway.devstack.catalog_seed import create_tables
from sluiceway.tools.backup import (
    Row,
    check_backup,
    check_partial,
    open_backup,
    row_tenants,
    table_rows,
)


@dataclass(frozen=True)
class RestoreRequest:
    source: str
    dsn: str
    tenants: tuple[str, ...] = ()
    replace: bool = False
    # a remapped backup's rows carry the remap's target tenant: restored only when named here
    as_tenant: str | None = None


def restore_order(entities: Iterable[str]) -> list[str]:
    """``entities`` in the catalog's load order, parents before children (deletes, with
    --replace, run in the reverse order); unknown names are refused, not skipped."""
    order = load_order()
    unknown = sorted(set(entities) - set(order))
    if unknown:
        raise RestoreError(f"backup names unknown tables {unknown}; expected {list(order)}")
    wanted = set(entities)
    return [e for e in order if e in wanted]


def schema_difference(table: str, problems: list[str]) -> str:
    """One line naming the table and how it differs from the source schema."""
    return (
        f"table {table} in the target differs from the source schema: {'; '.join(problems)}; "
        "drop or fix it, or restore into another database"
    )


def check_tables(cur: Any, catalog: Catalog, entities: list[str]) -> list[str]:
    """The entities whose tables are missing (to be created); a mismatched table is refused."""
    missing = []
    for entity in entities:
        found = catalog.entity(entity)
        if found.tenant.column is None:
            raise RestoreError(
                f"entity {entity!r} finds its tenant by schema; restore loads entities with "
                "a tenant column only for now"
            )
        problems = entity_problems(cur.connection, catalog, entity)
        if problems is None:
            missing.append(entity)
        elif problems:
            raise RestoreError(schema_difference(found.table, problems))
    return missing


def table_identifier(entity: Entity) -> sql.Composable:
    return sql.Identifier(*entity.table.split(".", 1))


def tenant_column(entity: Entity) -> str:
    assert entity.tenant.column is not None  # check_tables refused the others
    return entity.tenant.column


def existing_rows(
    cur: Any, catalog: Catalog, entities: list[str], tenants: tuple[str, ...]
) -> dict[str, int]:
    """Per tenant, how many rows the target's tables already hold (tenants with none left out)."""
    found: dict[str, int] = {}
    for name in entities:
        entity = catalog.entity(name)
        tenant = sql.Identifier(tenant_column(entity))
        cur.execute(
            sql.SQL(
                "SELECT {0}::text, count(*) FROM {1} WHERE {0}::text = ANY(%s) GROUP BY 1"
            ).format(tenant, table_identifier(entity)),
            (list(tenants),),
        )
        for tenant_id, count in cur.fetchall():
            found[tenant_id] = found.get(tenant_id, 0) + int(count)
    return found


def check_empty(existing: dict[str, int], replace: bool) -> None:
    """Refuse to mix a backup with rows the target already holds for its tenants."""
    if existing and not replace:
        tenant, count = min(existing.items())
        raise RestoreError(
            f"the target already holds {count} rows of tenant {tenant}; "
            "restore into an empty database, or pass --replace to delete them first"
        )


def check_loaded(existing: dict[str, int], loaded: dict[str, int], etl_id: str) -> None:
    """Never commit a --replace that deleted a tenant's rows and loaded none for it."""
    for tenant, count in sorted(existing.items()):
        if not loaded.get(tenant):
            raise RestoreError(
                f"restore --replace would delete {count} rows of tenant {tenant} and load none "
                f"from backup {etl_id}; nothing was changed"
            )


def _values(
    rows: Iterator[Row], names: list[str], adapt: list[Any], loaded: dict[str, int]
) -> Iterator[tuple[Any, ...]]:
    # _tenant_id becomes the tenant column; the other metadata columns are the lake's own
    for row in rows:
        try:
            cells = (row["_tenant_id"], *(row[n] for n in names))
        except KeyError as exc:
            raise RestoreError(
                f"the backup has no column {exc.args[0]!r}; restore needs a backup with every "
                "column (a replay, or a full export without a fields selection)"
            ) from None
        loaded[cells[0]] = loaded.get(cells[0], 0) + 1
        yield tuple(to_param(cell) for to_param, cell in zip(adapt, cells, strict=True))


def load_table(
    cur: Any, catalog: Catalog, name: str, rows: Iterator[Row], loaded: dict[str, int],
    on_conflict: sql.Composable = sql.SQL(""),
) -> int:  # fmt: skip
    """Insert the rows, each value cast to its column's type; ``loaded`` counts them per
    tenant. ``on_conflict``: an ``ON CONFLICT ...`` clause (migrate upserts)."""
    entity = catalog.entity(name)
    tenant = pg_type(entity.tenant.type, catalog.types)
    types = [tenant, *(column_type(c, catalog.types) for c in entity.columns)]
    names = list(entity.column_names)
    statement = sql.SQL("INSERT INTO {} ({}) VALUES %s {}").format(
        table_identifier(entity), column_list([tenant_column(entity), *names]), on_conflict
    )
    template = sql.SQL("({})").format(sql.SQL(", ").join(t.restore_placeholder() for t in types))
    text = template.as_string(cur)
    adapt = [t.restore_param for t in types]
    count = 0
    batch: list[tuple[Any, ...]] = []
    for values in _values(rows, names, adapt, loaded):
        batch.append(values)
        if len(batch) >= 5_000:
            execute_values(cur, statement, batch, template=text, page_size=1_000)
            count, batch = count + len(batch), []
    if batch:
        execute_values(cur, statement, batch, template=text, page_size=1_000)
        count += len(batch)
    return count


def column_list(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def restore(request: RestoreRequest, s3: S3Settings, codec: Codec) -> tuple[str, dict[str, int]]:
    """Load the latest full export at ``request.source``; returns its etl_id and rows per table."""
    lake, manifest = open_backup(request.source, s3)
    tenants = check_backup(manifest, request.tenants, request.as_tenant)
    check_partial(manifest, request.replace)
    entities = restore_order(manifest.tables)
    carried = row_tenants(manifest)
    conn = _connect(request.dsn)
    try:
        # one transaction: committed at the end of the block, rolled back on any error
        with conn, conn.cursor() as cur:
            catalog = codec.catalog
            missing = check_tables(cur, catalog, entities)
            present = [e for e in entities if e not in missing]
            existing = existing_rows(cur, catalog, present, tenants)
            check_empty(existing, request.replace)
            prepare_tables(cur, catalog, missing, present, tenants)
            loaded: dict[str, int] = {}
            counts = {
                e: load_table(
                    cur, catalog, e, table_rows(lake, manifest, e, tenants, carried), loaded
                )
                for e in entities
            }
            check_loaded(existing, loaded, manifest.etl_id)
    finally:
        conn.close()
    return manifest.etl_id, counts


def prepare_tables(
    cur: Any, catalog: Catalog, missing: list[str], present: list[str], tenants: tuple[str, ...]
) -> None:
    """Create missing tables as the catalog describes them; clear the tenants' rows
    (--replace)."""
    if missing:
        create_tables(cur, catalog, Tenants.of(catalog, tenants), missing, foreign_keys=False)
    for name in missing:
        # as the demo's source has it, so the restored database can itself be captured
        cur.execute(
            sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(
                table_identifier(catalog.entity(name))
            )
        )
    for name in reversed(present):
        entity = catalog.entity(name)
        delete = sql.SQL("DELETE FROM {} WHERE {}::text = ANY(%s)")
        cur.execute(
            delete.format(table_identifier(entity), sql.Identifier(tenant_column(entity))),
            (list(tenants),),
        )


def _connect(dsn: str) -> Any:
    try:
        return psycopg2.connect(dsn)
    except psycopg2.Error as exc:
        raise RestoreError(f"cannot connect to the target database: {pg_error_line(exc)}") from exc
