"""Lakes are data, and a lake may come from someone else: its manifests' paths and its files'
column names must never make reconstruct or restore read outside the lake or run SQL of the
lake's choosing. Each lake here is hand-made; the targets are real (PostgreSQL on the stack).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import psycopg2.sql
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluiceway.common.codec import Codec
from sluiceway.sinks.rows import arrow_schema
from tests.conftest import Cli, Stack, fresh_database
from tests.manifests import complete_manifest

pytestmark = pytest.mark.integration
ETL_ID = "20261122T100000Z-aaaa"
TOPIC = "sw.cdc.project"
TS = datetime(2026, 11, 22, tzinfo=UTC)
PART = f"2026/11/22/daily-export/full-export/project/{ETL_ID}/part-00000-{0:020d}.parquet"


def project_row(entity_id: int, name: str) -> dict[str, Any]:
    return {
        "id": entity_id, "key": f"P{entity_id}", "name": name, "description": None,
        "lead_id": None, "project_type": "software", "category": None, "url": None,
        "created": TS, "updated": TS, "_tenant_id": "t1", "_op": "c", "_deleted": False,
        "_position": entity_id, "_source_ts": TS, "_etl_id": ETL_ID,
    }  # fmt: skip


def write_rows(path: Path, rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def full_manifest(lake: Path, listed: str, rows: int) -> None:
    """A complete full export of tenant t1's projects that lists one file, ``listed``."""
    entry = {"path": listed, "rows": rows, "bytes": 1, "partition": 0, "start_offset": 0}
    document = {
        "etl_id": ETL_ID, "type": "full", "status": "complete",
        "spec": {"tenants": ["t1"], "entities": ["project"], "destination": str(lake),
                 "format": "parquet"},
        "start": {TOPIC: {"0": 0}}, "cut": {TOPIC: {"0": rows}},
        "tables": {"project": {"rows": rows, "bytes": 1, "files": [entry]}},
    }  # fmt: skip
    (lake / "_runs").mkdir(parents=True, exist_ok=True)
    (lake / "_runs" / f"{ETL_ID}.json").write_text(json.dumps(complete_manifest(document)))


@pytest.fixture
def lake_cli(local_stack: Stack) -> Cli:
    """The CLI as a user runs it: reconstruct and restore need no topics and no source."""
    return Cli(dict(os.environ))


def one_line_error(proc: Any) -> str:
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return str(proc.stderr)


def pg_url(pg: Any) -> str:
    return (
        f"postgresql://{pg.user}:{pg.password.get_secret_value()}@{pg.host}:{pg.port}/{pg.dbname}"
    )


# -- SQL from a column name -------------------------------------------------------------------


def injecting_lake(root: Path, planted: Path) -> str:
    """A lake whose project file has a column whose name ends the identifier reconstruct
    quotes it in and appends ``COPY ... TO planted``: unquoted, DuckDB runs it."""
    evil = f'name" AS "name" FROM lake_rows; COPY (SELECT 42 AS x) TO \'{planted}\'; --'
    schema = arrow_schema(Codec().schemas["project"].record).append(pa.field(evil, pa.string()))
    write_rows(root / PART, [project_row(1, "first") | {evil: "payload"}], schema)
    full_manifest(root, PART, 1)
    return evil


@pytest.mark.parametrize("kind", ["parquet", "duckdb", "postgresql"])
def test_a_crafted_column_name_is_data_not_sql(
    lake_cli: Cli, local_stack: Stack, tmp_path: Path, kind: str
) -> None:
    planted = tmp_path / "planted.csv"
    evil = injecting_lake(tmp_path / "lake", planted)
    cli, out = lake_cli, tmp_path / "out"
    args = ("reconstruct", "--dest", str(tmp_path / "lake"), "--table", "project")
    if kind == "parquet":
        cli(*args, "--out", str(out / "p.parquet"))
        rows = pq.read_table(out / "p.parquet").to_pylist()
    elif kind == "duckdb":
        cli(*args, "--out", f"duckdb://{out / 'x.db'}#p")
        with duckdb.connect(str(out / "x.db")) as con:
            got = con.sql("SELECT * FROM p")
            assert got is not None
            rows = [dict(zip(got.columns, r, strict=True)) for r in got.fetchall()]
    else:
        with fresh_database(local_stack.pg, f"sw_hostile_{uuid.uuid4().hex[:10]}") as pg:
            cli(*args, "--out", f"{pg_url(pg)}#public.p")
            rows = pg_rows(pg.dsn(), "p")
        evil = evil[:63]  # PostgreSQL keeps the first 63 bytes of a name
    assert not planted.exists(), "a column name ran SQL: it wrote a file"
    assert [(r["id"], r["name"], r[evil]) for r in rows] == [(1, "first", "payload")]


def pg_rows(dsn: str, table: str) -> list[dict[str, Any]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(psycopg2.sql.SQL("SELECT * FROM {}").format(psycopg2.sql.Identifier(table)))
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    conn.close()
    return rows


# -- paths outside the lake -------------------------------------------------------------------


def escaping_lake(tmp_path: Path, how: str) -> tuple[Path, Path]:
    """A lake whose manifest lists a secret file beside the lake (``..``) or by absolute path."""
    lake, secret = tmp_path / "lake", tmp_path / "outside" / "secret.parquet"
    schema = arrow_schema(Codec().schemas["project"].record)
    write_rows(secret, [project_row(7, "secret of another lake")], schema)
    listed = "../outside/secret.parquet" if how == "dotdot" else str(secret)
    if how == "nested":
        listed = "2026/../../outside/secret.parquet"
    full_manifest(lake, listed, 1)
    return lake, secret


@pytest.mark.parametrize("how", ["dotdot", "absolute", "nested"])
def test_reconstruct_refuses_a_manifest_path_outside_the_lake(
    lake_cli: Cli, local_stack: Stack, tmp_path: Path, how: str
) -> None:
    lake, _secret = escaping_lake(tmp_path, how)
    out = tmp_path / "out" / "p.parquet"
    proc = lake_cli(
        "reconstruct", "--dest", str(lake), "--table", "project", "--out", str(out), check=False
    )
    message = one_line_error(proc)
    assert "secret.parquet" in message and "not inside the lake" in message
    assert not out.exists()


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_restore_refuses_a_manifest_path_outside_the_lake(
    lake_cli: Cli, local_stack: Stack, tmp_path: Path, how: str
) -> None:
    lake, _secret = escaping_lake(tmp_path, how)
    with fresh_database(local_stack.pg, f"sw_hostile_{uuid.uuid4().hex[:10]}") as pg:
        proc = lake_cli("restore", "--from", str(lake), "--target-dsn", pg.dsn(), check=False)
        message = one_line_error(proc)
        assert "secret.parquet" in message and "not inside the lake" in message
        with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            assert cur.fetchall() == [], "restore wrote something"
        conn.close()
