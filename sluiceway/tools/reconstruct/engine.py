"""Reconstruct one table: plan, check every input, then write. Shared by the CLI and tests.

Every check (chain, files, row counts, target) runs in ``prepare`` and ``check``, before
``write`` creates anything: bad input never leaves a half-written target behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc

from sluiceway.common.settings import S3Settings
from sluiceway.lake.storage import Lake
from sluiceway.sinks.rows import METADATA_NAMES, arrow_schema
from sluiceway.tools.reconstruct import lake as lake_io
from sluiceway.tools.reconstruct import write
from sluiceway.tools.reconstruct.errors import TargetWriteError
from sluiceway.tools.reconstruct.plan import Plan, make_plan
from sluiceway.tools.reconstruct.sql import quote_identifier, reconstruct_sql
from sluiceway.tools.reconstruct.target import Target, parse_target
from sluiceway.tools.reconstruct.typed import catalog_types, record_key

VIEW = "lake_rows"


@dataclass(frozen=True)
class Job:
    destination: str
    lake: Lake
    plan: Plan
    target: Target
    with_metadata: bool
    s3: S3Settings = field(repr=False)


@dataclass(frozen=True)
class Checked:
    job: Job
    schema: pa.Schema  # the lake files' columns, unified across the chain


def prepare(
    destination: str, table: str, as_of: str | None, out: str, s3: S3Settings,
    with_metadata: bool = False,
) -> Job:  # fmt: skip
    """Parse the target, read the manifests and prove the chain (nothing written)."""
    target = parse_target(out, table)
    lake = lake_io.open_source(destination, s3)
    plan = make_plan(lake_io.load_runs(lake), lake_io.load_root(lake), table, as_of)
    return Job(destination, lake, plan, target, with_metadata, s3)


def check(job: Job, advance: lake_io.Advance) -> Checked:
    """Check every listed file against its manifest, and the target against the result."""
    schemas = lake_io.check_files(job.lake, job.plan.files, advance)
    if schemas:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    else:  # no rows in any run: the entity's own schema still gives the columns
        from sluiceway.common.codec import Codec

        schema = arrow_schema(Codec().schemas[job.plan.table].record)
    checked = Checked(job, schema)
    if job.target.kind == "postgresql":
        write.check_postgres(job.target, output_schema(checked), catalog_types(job.plan.table))
    return checked


def _output_columns(checked: Checked) -> list[tuple[str, str]]:
    """(SQL expression, output name): ``tenant_id`` first, as in the source tables."""
    names = [("_tenant_id", "tenant_id")]
    names += [(n, n) for n in checked.schema.names if n not in METADATA_NAMES]
    if checked.job.with_metadata:
        names += [(n, n) for n in METADATA_NAMES]
    return names


def output_schema(checked: Checked) -> pa.Schema:
    fields = [checked.schema.field(src).with_name(name) for src, name in _output_columns(checked)]
    return pa.schema(f.with_nullable(True) for f in fields)


def query(checked: Checked) -> str:
    columns = _output_columns(checked)
    select = ", ".join(f"{quote_identifier(src)} AS {quote_identifier(n)}" for src, n in columns)
    key = record_key(checked.job.plan.table)
    order = ", ".join(quote_identifier(k) for k in key)
    rows = reconstruct_sql(VIEW, key)
    return f"SELECT {select} FROM ({rows}) ORDER BY tenant_id, {order}"


def register(checked: Checked, con: duckdb.DuckDBPyConnection) -> None:
    """Make the chain's rows visible to DuckDB as ``lake_rows``, streamed from the files.

    DuckDB's decimals hold at most 38 digits: wider ones (numeric(p,s) with p up to 76)
    pass through it as their exact text, and ``_cast`` makes them decimals again."""
    files = checked.job.plan.files
    if not files:
        con.register(VIEW, _duckdb_readable(checked.schema.empty_table()))
        return
    rows = lake_io.dataset(checked.job.lake, files, checked.schema)
    wide = [f.name for f in checked.schema if pa.types.is_decimal256(f.type)]
    if not wide:
        con.register(VIEW, rows)
        return
    columns = {
        n: pc.field(n).cast(pa.string()) if n in wide else pc.field(n) for n in checked.schema.names
    }
    con.register(VIEW, rows.scanner(columns=columns).to_reader())


def _duckdb_readable(table: pa.Table) -> pa.Table:
    wide = [i for i, f in enumerate(table.schema) if pa.types.is_decimal256(f.type)]
    for i in wide:
        table = table.set_column(i, table.schema.field(i).name, table.column(i).cast(pa.string()))
    return table


def run(checked: Checked) -> dict[str, Any]:
    """Write the result; returns the summary ``--json`` prints. A failure while writing
    (the writers have already removed their temporaries) becomes one line naming the target."""
    try:
        rows = _write(checked)
    except (OSError, pa.ArrowException, duckdb.Error, psycopg2.Error) as exc:
        message = " ".join(str(exc).split())[:300]
        raise TargetWriteError(f"cannot write {checked.job.target.display}: {message}") from exc
    return summary(checked, rows)


def _write(checked: Checked) -> int:
    job, sql_text = checked.job, query(checked)
    if job.target.kind == "duckdb":
        rows = write.write_duckdb(job.target, lambda con: register(checked, con), sql_text)
    else:
        with duckdb.connect() as con:
            register(checked, con)
            batches = _cast(_reader(con.sql(sql_text)), output_schema(checked))
            if job.target.kind == "postgresql":
                table = job.plan.table
                rows = write.write_postgres(
                    job.target, batches, catalog_types(table), record_key(table)
                )
            else:
                rows = write.write_parquet(job.target, batches, job.s3)
    return rows


def _reader(relation: duckdb.DuckDBPyRelation) -> pa.RecordBatchReader:
    """The result as a stream of batches (DuckDB 1.4 renamed fetch_arrow_reader)."""
    if hasattr(relation, "to_arrow_reader"):
        return relation.to_arrow_reader(write.BATCH_ROWS)
    return relation.fetch_arrow_reader(write.BATCH_ROWS)


def _cast(batches: pa.RecordBatchReader, schema: pa.Schema) -> pa.RecordBatchReader:
    """DuckDB's result in the lake's own types (it may widen, e.g. timestamps' zone)."""
    return pa.RecordBatchReader.from_batches(schema, (batch.cast(schema) for batch in batches))


def summary(checked: Checked, rows_out: int) -> dict[str, Any]:
    plan = checked.job.plan
    per_run: dict[str, dict[str, Any]] = {
        r.etl_id: {"etl_id": r.etl_id, "type": r.type, "files": 0, "rows": 0} for r in plan.runs
    }
    for ref in plan.files:
        per_run[ref.etl_id]["files"] += 1
        per_run[ref.etl_id]["rows"] += ref.rows
    return {
        "destination": checked.job.destination,
        "table": plan.table,
        "as_of": plan.as_of,
        "runs": list(per_run.values()),
        "rows_in": sum(ref.rows for ref in plan.files),
        "rows_out": rows_out,
        "columns": output_schema(checked).names,
        "target": checked.job.target.display,
    }
