"""Restoring a backup into PostgreSQL: the tables of the source's schema, one transaction.

Every check (schema, rows already there) runs before the first write, and everything is
written in one transaction: a failed restore leaves the target as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from sluiceway.common.codec import Codec
from sluiceway.common.entities import load_order
from sluiceway.common.errors import RestoreError
from sluiceway.common.redact import pg_error_line
from sluiceway.common.settings import S3Settings
from sluiceway.producers.schema_check import existing_table_problems
from sluiceway.producers.source import (
    TABLES,
    column_list,
    columns,
    create_table_sql,
    replica_identity_sql,
    table_name,
)
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


def check_tables(cur: Any, codec: Codec, entities: list[str]) -> list[str]:
    """The entities whose tables are missing (to be created); a mismatched table is refused."""
    missing = []
    for entity in entities:
        problems = existing_table_problems(cur, codec, entity)
        if problems is None:
            missing.append(entity)
        elif problems:
            raise RestoreError(schema_difference(TABLES[entity], problems))
    return missing


def existing_rows(cur: Any, entities: list[str], tenants: tuple[str, ...]) -> dict[str, int]:
    """Per tenant, how many rows the target's tables already hold (tenants with none left out)."""
    found: dict[str, int] = {}
    for entity in entities:
        cur.execute(
            sql.SQL(
                "SELECT tenant_id, count(*) FROM {} WHERE tenant_id = ANY(%s) GROUP BY tenant_id"
            ).format(table_name(entity)),
            (list(tenants),),
        )
        for tenant, count in cur.fetchall():
            found[tenant] = found.get(tenant, 0) + int(count)
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
    rows: Iterator[Row], names: list[str], loaded: dict[str, int]
) -> Iterator[tuple[Any, ...]]:
    # _tenant_id becomes the table's tenant_id; the other metadata columns are the lake's own
    for row in rows:
        try:
            values = (row["_tenant_id"], *(row[n] for n in names))
        except KeyError as exc:
            raise RestoreError(
                f"the backup has no column {exc.args[0]!r}; restore needs a backup with every "
                "column (a replay, or a full export without a fields selection)"
            ) from None
        loaded[values[0]] = loaded.get(values[0], 0) + 1
        yield values


def load_table(
    cur: Any, codec: Codec, entity: str, rows: Iterator[Row], loaded: dict[str, int]
) -> int:
    """Insert the rows; ``loaded`` counts them per tenant."""
    names = [c.name for c in columns(codec, entity)]
    statement = sql.SQL("INSERT INTO {} ({}) VALUES %s").format(
        table_name(entity), column_list(["tenant_id", *names])
    )
    count = 0
    batch: list[tuple[Any, ...]] = []
    for values in _values(rows, names, loaded):
        batch.append(values)
        if len(batch) >= 5_000:
            execute_values(cur, statement, batch, page_size=1_000)
            count, batch = count + len(batch), []
    if batch:
        execute_values(cur, statement, batch, page_size=1_000)
        count += len(batch)
    return count


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
            missing = check_tables(cur, codec, entities)
            present = [e for e in entities if e not in missing]
            existing = existing_rows(cur, present, tenants)
            check_empty(existing, request.replace)
            _prepare(cur, codec, missing, present, tenants)
            loaded: dict[str, int] = {}
            counts = {
                e: load_table(
                    cur, codec, e, table_rows(lake, manifest, e, tenants, carried), loaded
                )
                for e in entities
            }
            check_loaded(existing, loaded, manifest.etl_id)
    finally:
        conn.close()
    return manifest.etl_id, counts


def _prepare(
    cur: Any, codec: Codec, missing: list[str], present: list[str], tenants: tuple[str, ...]
) -> None:
    """Create missing tables as the source has them; clear the tenants' rows (--replace)."""
    for entity in missing:
        cur.execute(create_table_sql(codec, entity))
        # as on the source, so the restored database can itself be captured
        cur.execute(replica_identity_sql(entity))
    for entity in reversed(present):
        delete = sql.SQL("DELETE FROM {} WHERE tenant_id = ANY(%s)")
        cur.execute(delete.format(table_name(entity)), (list(tenants),))


def _connect(dsn: str) -> Any:
    try:
        return psycopg2.connect(dsn)
    except psycopg2.Error as exc:
        raise RestoreError(f"cannot connect to the target database: {pg_error_line(exc)}") from exc
