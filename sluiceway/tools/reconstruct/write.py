"""Committing the result to its target, all or nothing. I/O.

- Parquet: written under a hidden temporary name beside the target, then moved onto it
  (on S3 a copy and a delete: the target object appears whole or not at all).
- DuckDB: ``CREATE OR REPLACE TABLE`` inside one transaction; a new database file is
  removed again if that fails.
- PostgreSQL: create (or ``TRUNCATE``) the table and ``COPY`` the rows inside one
  transaction: other sessions wait on the table's lock, then see all the new rows; a
  rollback leaves the old table as it was.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from psycopg2 import sql

from sluiceway.common.pgtypes import PgType
from sluiceway.common.redact import pg_error_line
from sluiceway.common.settings import S3Settings
from sluiceway.lake import layout, storage
from sluiceway.tools.reconstruct.errors import TargetError
from sluiceway.tools.reconstruct.sql import quote_identifier
from sluiceway.tools.reconstruct.target import Target
from sluiceway.tools.reconstruct.typed import insert_batches

BATCH_ROWS = 65_536


def filesystem(target: Target, s3: S3Settings) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a Parquet target and the target's path on it."""
    if target.on_s3:
        return storage.s3_filesystem(s3), target.location.removeprefix("s3://")
    return pafs.LocalFileSystem(), target.location


def write_parquet(target: Target, batches: pa.RecordBatchReader, s3: S3Settings) -> int:
    fs, final = filesystem(target, s3)
    temporary = layout.sibling(final, layout.temp_name(layout.basename(final)))
    if not target.on_s3:
        fs.create_dir(layout.parent(final), recursive=True)
    rows = 0
    try:
        with fs.open_output_stream(temporary) as out, pq.ParquetWriter(out, batches.schema) as w:
            for batch in batches:
                w.write_batch(batch)
                rows += batch.num_rows
        if not target.on_s3:
            storage.fsync_path(temporary)
        fs.move(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError, pa.ArrowException):
            fs.delete_file(temporary)
        raise
    if not target.on_s3:
        storage.fsync_path(layout.parent(final), directory=True)
    return rows


def write_duckdb(target: Target, fill: Any, query: str) -> int:
    """Run ``query`` in the target database (``fill`` registers its inputs) into the table."""
    path = Path(target.location)
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with duckdb.connect(str(path)) as con:
            fill(con)
            con.execute("BEGIN TRANSACTION")
            try:
                table = quote_identifier(target.table or "")
                con.execute(f"CREATE OR REPLACE TABLE {table} AS {query}")
                found = con.execute(f"SELECT count(*) FROM {table}").fetchone()
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
    except BaseException:
        if not existed:  # leave no empty database behind
            for leftover in (path, path.with_name(path.name + ".wal")):
                leftover.unlink(missing_ok=True)
        raise
    return int(found[0]) if found else 0


_PG_TYPES = {
    pa.int64(): "bigint",
    pa.int32(): "integer",
    pa.int16(): "smallint",
    pa.string(): "text",
    pa.large_string(): "text",
    pa.bool_(): "boolean",
    pa.float64(): "double precision",
    pa.float32(): "real",
    pa.date32(): "date",
}


def copyable(schema: pa.Schema) -> bool:
    """Whether COPY's CSV carries every column exactly (else rows are inserted typed)."""
    return all(pa.types.is_timestamp(f.type) or f.type in _PG_TYPES for f in schema)


def pg_type(field: pa.Field, types: Mapping[str, PgType] | None = None) -> str:
    """The column's type in the target: the catalog's when known, else from its Arrow type."""
    if types is not None and field.name in types:
        return types[field.name].sql
    if pa.types.is_timestamp(field.type):
        return "timestamptz" if field.type.tz else "timestamp"
    found = _PG_TYPES.get(field.type)
    if found is None:
        raise TargetError(
            f"column {field.name!r} has type {field.type}, which reconstruct cannot write to "
            "PostgreSQL; write a .parquet or duckdb target instead"
        )
    return found


@contextlib.contextmanager
def pg_connect(target: Target) -> Iterator[Any]:
    try:
        conn = psycopg2.connect(target.location)
    except psycopg2.Error as exc:
        raise TargetError(f"cannot connect to {target.display}: {pg_error_line(exc)}") from exc
    try:
        yield conn
    finally:
        conn.close()


def pg_columns(conn: Any, target: Target) -> list[str] | None:
    """The existing table's column names in order, or None when there is no such table."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (target.schema, target.table),
        )
        names = [row[0] for row in cur.fetchall()]
    conn.rollback()  # end the read-only transaction the query opened
    return names or None


def schema_exists(conn: Any, target: Target) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (target.schema,))
        found = cur.fetchone() is not None
    conn.rollback()
    return found


def check_postgres(
    target: Target, schema: pa.Schema, types: Mapping[str, PgType] | None = None
) -> None:
    """Before anything is written: the target answers, and an existing table fits the rows."""
    for field in schema:
        pg_type(field, types)
    with pg_connect(target) as conn:
        existing = pg_columns(conn, target)
        if existing is None and not schema_exists(conn, target):
            raise TargetError(
                f"schema {target.schema!r} does not exist in {target.display}; "
                "create it first or name another schema"
            )
    wanted = schema.names
    if existing is not None and sorted(existing) != sorted(wanted):
        missing = sorted(set(wanted) - set(existing))
        extra = sorted(set(existing) - set(wanted))
        raise TargetError(
            f"table {target.schema}.{target.table} of {target.display} exists with other "
            f"columns: missing {missing}, unexpected {extra}; drop it or name another table"
        )


def write_postgres(
    target: Target,
    batches: pa.RecordBatchReader,
    types: Mapping[str, PgType] | None = None,
    key: tuple[str, ...] = ("id",),
) -> int:
    """``types``: the catalog's column types (``typed.catalog_types``); ``key`` the record
    key columns, which with ``tenant_id`` are the new table's primary key."""
    name = sql.Identifier(target.schema or "public", target.table or "")
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in batches.schema.names)
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(name, columns)
    rows = 0
    with pg_connect(target) as conn:
        try:
            with conn.cursor() as cur:
                _prepare_table(cur, target, batches.schema, types, key)
                if types is not None and not copyable(batches.schema):
                    rows = insert_batches(cur, name, batches, types)
                else:
                    for batch in batches:
                        cur.copy_expert(copy.as_string(conn), _csv(batch))
                        rows += batch.num_rows
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return rows


def _prepare_table(
    cur: Any,
    target: Target,
    schema: pa.Schema,
    types: Mapping[str, PgType] | None,
    key: tuple[str, ...],
) -> None:
    name = sql.Identifier(target.schema or "public", target.table or "")
    if table_exists(cur, target):
        cur.execute(sql.SQL("TRUNCATE {}").format(name))
        return
    defs = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(pg_type(f, types))) for f in schema
    )
    primary = (
        sql.SQL("PRIMARY KEY (tenant_id, {})").format(sql.SQL(", ").join(map(sql.Identifier, key)))
        if {"tenant_id", *key} <= set(schema.names)
        else None
    )
    body = sql.SQL(", ").join([defs, primary]) if primary is not None else defs
    cur.execute(sql.SQL("CREATE TABLE {} ({})").format(name, body))


def table_exists(cur: Any, target: Target) -> bool:
    cur.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        (target.schema, target.table),
    )
    return cur.fetchone() is not None


def _csv(batch: pa.RecordBatch) -> io.BytesIO:
    """One batch as COPY's CSV: every value quoted, so only NULL is an unquoted empty field."""
    buffer = io.BytesIO()
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    pacsv.write_csv(batch, buffer, options)
    buffer.seek(0)
    return buffer
