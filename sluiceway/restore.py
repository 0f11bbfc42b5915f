"""Restoring a backup into PostgreSQL: the tables of the source's schema, one transaction.

Every check (schema, rows already there) runs before the first write, and everything is
written in one transaction: a failed restore leaves the target as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2.extras import execute_values

from producers.schema_check import existing_table_problems
from producers.source import TABLES, columns, create_table_sql
from sluiceway.backup import Row, check_backup, open_backup, table_rows
from sluiceway.codec import Codec
from sluiceway.errors import RestoreError
from sluiceway.redact import pg_error_line
from sluiceway.settings import ENTITIES, S3Settings

# Parents before children: issues name their project and users; comments and worklogs
# name their issue. Deletes (with --replace) run in the reverse order.
RESTORE_ORDER = ("project", "user", "issue", "comment", "worklog")


@dataclass(frozen=True)
class RestoreRequest:
    source: str
    dsn: str
    tenants: tuple[str, ...] = ()
    replace: bool = False


def restore_order(entities: Iterable[str]) -> list[str]:
    """``entities`` in dependency order; unknown names are refused, not skipped."""
    unknown = sorted(set(entities) - set(RESTORE_ORDER))
    if unknown:
        raise RestoreError(f"backup names unknown tables {unknown}; expected {list(ENTITIES)}")
    wanted = set(entities)
    return [e for e in RESTORE_ORDER if e in wanted]


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


def check_empty(cur: Any, entities: list[str], tenants: tuple[str, ...], replace: bool) -> None:
    """Refuse to mix a backup with rows the target already holds for its tenants."""
    for entity in entities:
        cur.execute(
            f"SELECT tenant_id, count(*) FROM {TABLES[entity]} WHERE tenant_id = ANY(%s) "
            "GROUP BY tenant_id ORDER BY tenant_id LIMIT 1",
            (list(tenants),),
        )
        found = cur.fetchone()
        if found and not replace:
            raise RestoreError(
                f"table {TABLES[entity]} already holds {found[1]} rows of tenant {found[0]}; "
                "restore into an empty database, or pass --replace to delete them first"
            )


def _values(rows: Iterator[Row], names: list[str]) -> Iterator[tuple[Any, ...]]:
    # _tenant_id becomes the table's tenant_id; the other metadata columns are the lake's own
    for row in rows:
        try:
            yield (row["_tenant_id"], *(row[n] for n in names))
        except KeyError as exc:
            raise RestoreError(
                f"the backup has no column {exc.args[0]!r}; restore needs a backup with every "
                "column (a replay, or a full export without a fields selection)"
            ) from None


def load_table(cur: Any, codec: Codec, entity: str, rows: Iterator[Row]) -> int:
    names = [c.name for c in columns(codec, entity)]
    statement = f"INSERT INTO {TABLES[entity]} (tenant_id, {', '.join(names)}) VALUES %s"
    count = 0
    batch: list[tuple[Any, ...]] = []
    for values in _values(rows, names):
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
    tenants = check_backup(manifest, request.tenants)
    entities = restore_order(manifest["tables"])
    conn = _connect(request.dsn)
    try:
        # one transaction: committed at the end of the block, rolled back on any error
        with conn, conn.cursor() as cur:
            missing = check_tables(cur, codec, entities)
            present = [e for e in entities if e not in missing]
            check_empty(cur, present, tenants, request.replace)
            _prepare(cur, codec, missing, present, tenants)
            counts = {
                e: load_table(cur, codec, e, table_rows(lake, manifest, e, tenants))
                for e in entities
            }
    finally:
        conn.close()
    return manifest["etl_id"], counts


def _prepare(
    cur: Any, codec: Codec, missing: list[str], present: list[str], tenants: tuple[str, ...]
) -> None:
    """Create missing tables as the source has them; clear the tenants' rows (--replace)."""
    for entity in missing:
        cur.execute(create_table_sql(codec, entity))
        # as on the source, so the restored database can itself be captured
        cur.execute(f"ALTER TABLE {TABLES[entity]} REPLICA IDENTITY FULL")
    for entity in reversed(present):
        cur.execute(f"DELETE FROM {TABLES[entity]} WHERE tenant_id = ANY(%s)", (list(tenants),))


def _connect(dsn: str) -> Any:
    try:
        return psycopg2.connect(dsn)
    except psycopg2.Error as exc:
        raise RestoreError(f"cannot connect to the target database: {pg_error_line(exc)}") from exc
