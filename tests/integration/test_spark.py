"""Spark reads Sluiceway's files unchanged: the Data pipeline CSV with the documented recipe,
and the Parquet lake (every table, every type), where the reconstruction SQL gives what
DuckDB gives.

A real local Spark (PySpark on the machine's Java), one small session for the module. The
export is a real run (PostgreSQL -> capture -> Kafka -> processor -> sink) in the Data
pipeline layout; the seed's texts hold quotes, commas, line breaks, backslashes, tabs and
non-ASCII. With line breaks preserved, every cell Spark reads equals the source (Spark
itself reads a CRLF inside a value as LF); with the default escaping, every cell equals the
source with its line breaks written as \\n.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest
from pyspark.sql import DataFrame, SparkSession

from sluiceway.common.codec import Codec
from sluiceway.sinks.csv_file import escape_line_breaks
from sluiceway.tools.reconstruct.sql import read_parquet_rows, reconstruct_sql
from tests.catalogs import ENTITIES
from tests.conftest import Cli, Stack, isolated, settings_env

pytestmark = pytest.mark.integration
TENANT = "tenant-001"
TEXT_COLUMNS = ("key", "summary", "description", "labels", "status", "priority")


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = (
        SparkSession.builder.master("local[1]")
        .appName("sluiceway-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def exports(
    local_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The same source exported twice as Data pipeline CSV: line breaks preserved, escaped."""
    for kafka, pg, cli in isolated(local_stack):
        cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "25", "--seed", "7")
        cli("capture", "--snapshot-only")
        root = tmp_path_factory.mktemp("dp")
        found: dict[str, Any] = {}
        # the two runs are independent (own destination, topic and groups): run them at once
        with ThreadPoolExecutor(2) as pool:
            runs = []
            for job_id, escape in ((1, "false"), (2, "true")):
                spec = {"tenants": [TENANT], "destination": str(root / str(job_id)),
                        "format": "csv", "layout": "datapipeline", "job_id": job_id}  # fmt: skip
                spec_file = root / f"spec{job_id}.json"
                spec_file.write_text(json.dumps(spec))
                env = {"SLUICEWAY_SINK_CSV_ESCAPE_NEWLINES": escape}
                args = ("export", "start", "--spec", str(spec_file), "--wait")
                runs.append(pool.submit(Cli(settings_env(kafka, pg, env)).json, *args, timeout=600))
                found["escaped" if escape == "true" else "preserved"] = root / str(job_id)
            for run in runs:
                run.result()
        with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT id, {', '.join(TEXT_COLUMNS)} FROM issues WHERE tenant_id = %s",
                        (TENANT,))  # fmt: skip
            found["source"] = {int(r[0]): tuple(r[1:]) for r in cur.fetchall()}
        yield found


def read_like_the_docs(spark: SparkSession, file_location: str) -> DataFrame:
    """The Spark / Databricks recipe of Data pipeline's documentation, word for word."""
    # Automatically set data type for columns
    infer_schema = "true"
    # Skip first row as it's a header
    first_row_is_header = "true"
    # Ignore multiline within double quotes
    multiline_support = "true"

    # The applied options are for CSV files. For other file types, these will be ignored.
    df = (
        spark.read.format("csv")
        .option("inferSchema", infer_schema)
        .option("header", first_row_is_header)
        .option("multiLine", multiline_support)
        .option("quote", '"')
        .option("escape", '"')
        .option("encoding", "UTF-8")
        .load(file_location)
    )
    return df


def issues(spark: SparkSession, job: Path) -> dict[int, tuple[Any, ...]]:
    [path] = job.glob("issues_job*.csv")
    rows = read_like_the_docs(spark, str(path)).select("id", *TEXT_COLUMNS).collect()
    return {int(r["id"]): tuple(r[c] for c in TEXT_COLUMNS) for r in rows}


def test_spark_reads_every_cell_back_when_line_breaks_are_preserved(
    spark: SparkSession, exports: dict[str, Any]
) -> None:
    source: dict[int, tuple[Any, ...]] = exports["source"]
    # Spark's CSV parser (univocity) turns a CRLF inside a quoted value into LF; the file holds
    # the CRLF (Python's csv module reads it back), so that one change is Spark's own
    expected = {
        k: tuple(v if v is None else v.replace("\r\n", "\n") for v in row)
        for k, row in source.items()
    }
    assert issues(spark, exports["preserved"]) == expected
    texts = "".join(str(v) for row in source.values() for v in row)
    assert all(c in texts for c in ('"', ",", "\n", "\r\n", "\\", "\t", "é", "日"))


def test_spark_reads_escaped_line_breaks_as_the_two_characters(
    spark: SparkSession, exports: dict[str, Any]
) -> None:
    source: dict[int, tuple[Any, ...]] = exports["source"]
    expected = {
        k: tuple(v if v is None else escape_line_breaks(v, "\\n") for v in row)
        for k, row in source.items()
    }
    assert issues(spark, exports["escaped"]) == expected


def test_spark_infers_the_types(spark: SparkSession, exports: dict[str, Any]) -> None:
    [path] = exports["preserved"].glob("issues_job*.csv")
    types = dict(read_like_the_docs(spark, str(path)).dtypes)
    assert types["id"] in ("int", "bigint") and types["created"].startswith("timestamp")
    assert types["description"] == "string"


# -- the Parquet lake -------------------------------------------------------------------------

SPARK_TYPES = {"long": "bigint", "int": "int", "string": "string", "boolean": "boolean",
               "double": "double", "timestamp-micros": "timestamp", "date": "date"}  # fmt: skip


@pytest.fixture(scope="module")
def lake(local_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A full Parquet export of two tenants (the native layout)."""
    for _kafka, _pg, cli in isolated(local_stack):
        cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "20", "--seed", "9")
        cli("capture", "--snapshot-only")
        root = tmp_path_factory.mktemp("lake")
        cli.json("export", "start", "--tenant", "tenant-001", "--tenant", "tenant-002",
                 "--dest", str(root), "--wait", timeout=600)  # fmt: skip
        yield root


def avro_kind(field_type: Any) -> str:
    kinds = [
        t for t in (field_type if isinstance(field_type, list) else [field_type]) if t != "null"
    ]
    kind = kinds[0]
    return str(kind.get("logicalType") or kind["type"]) if isinstance(kind, dict) else str(kind)


def plain(value: Any) -> Any:
    """DuckDB's and Spark's values alike: UTC date-times without a zone."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def test_spark_reads_every_table_and_type_and_reconstructs_like_duckdb(
    spark: SparkSession, lake: Path
) -> None:
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    manifest = json.loads((lake / "manifest.json").read_text())["latest"]
    run = json.loads((lake / "_runs" / f"{manifest['etl_id']}.json").read_text())
    codec = Codec()
    for table in ENTITIES:
        files = [str(lake / f["path"]) for f in run["tables"][table]["files"]]
        frame = spark.read.parquet(*files)
        types = dict(frame.dtypes)
        for field in codec.schemas[table].record["fields"]:
            assert types[field["name"]] == SPARK_TYPES[avro_kind(field["type"])], field
        frame.createOrReplaceTempView("lake_rows")
        # the one reconstruction SQL; Spark spells DuckDB's "* EXCLUDE" as "* EXCEPT"
        in_spark = spark.sql(reconstruct_sql("lake_rows").replace("EXCLUDE", "EXCEPT"))
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            in_duckdb = con.sql(reconstruct_sql(read_parquet_rows(files)))
            columns = in_duckdb.columns
            expected = sorted(tuple(map(plain, r)) for r in in_duckdb.fetchall())
        got = sorted(tuple(plain(r[c]) for c in columns) for r in in_spark.collect())
        assert got == expected and len(got) == run["tables"][table]["rows"], table
