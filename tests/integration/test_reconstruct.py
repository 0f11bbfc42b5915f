"""`sluiceway reconstruct` against real lakes: a full export and deltas taken under churn,
on a local directory and on S3, rebuild every table equal to the source, to Parquet, DuckDB
and PostgreSQL; bad input is refused by name before anything is written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import psycopg2.extras
import pyarrow.parquet as pq
import pytest

from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.lake.storage import s3_filesystem
from sluiceway.tools.reconstruct.sql import read_parquet_rows, reconstruct_sql
from tests.catalogs import ENTITIES
from tests.conftest import Cli, Stack, fresh_database, isolated, lake_files
from tests.integration.capture_harness import CaptureProcess, settings_for_capture
from tests.integration.test_capture import (
    _normalise,
    churn,
    finish,
    snapshot_done,
    source_rows,
    wait_caught_up,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration
# three tenants exported; tenant-004 stays out (its rows must not appear in any result)
TENANTS = ("tenant-001", "tenant-002", "tenant-003")
Rows = dict[tuple[str, int], dict[str, Any]]


@dataclass(frozen=True)
class Chain:
    cli: Cli
    stack: Stack
    local: Path
    s3: str  # s3://bucket/prefix
    runs: list[str]  # the local chain's etl_ids, full first
    truth: dict[str, Rows]  # per table, the exported tenants' source rows at the last cut


def export(cli: Cli, dest: str, run_type: str) -> dict[str, Any]:
    tenants = [arg for t in TENANTS for arg in ("--tenant", t)]
    result: dict[str, Any] = cli.json(
        "export", "start", *tenants, "--type", run_type, "--dest", dest, "--wait"
    )
    return result


def to_each(cli: Cli, dests: list[str], run_type: str) -> list[dict[str, Any]]:
    """One run to each destination, at once: each destination has its own chain, so the
    runs are independent; results in the order of ``dests``."""
    with ThreadPoolExecutor(len(dests)) as pool:
        return list(pool.map(lambda dest: export(cli, dest, run_type), dests))


def truth_by_table(pg: Any) -> dict[str, Rows]:
    out: dict[str, Rows] = {e: {} for e in ENTITIES}
    for (entity, key), row in source_rows(pg).items():
        tenant, _, entity_id = key.decode().partition("/")
        if tenant in TENANTS:
            out[entity][(tenant, int(entity_id))] = row
    return out


@pytest.fixture(scope="module")
def chain(local_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """One full export and two deltas under churn, to a local lake and to an S3 lake."""
    for kafka, pg, cli in isolated(local_stack):
        cli("source", "seed", "--tenants", "4", "--issues-per-tenant", "25", "--seed", "33")
        tmp = tmp_path_factory.mktemp("reconstruct")
        local, s3 = tmp / "lake", f"s3://{local_stack.s3.bucket}/recon-{uuid.uuid4().hex[:10]}"
        try:
            runs = exports_under_churn(kafka, pg, cli, tmp, [str(local), s3])
            yield Chain(cli, local_stack, local, s3, runs, truth_by_table(pg))
        finally:
            s3_filesystem(local_stack.s3).delete_dir(s3.removeprefix("s3://"))


def exports_under_churn(
    kafka: KafkaSettings, pg: PostgresSettings, cli: Cli, tmp: Path, dests: list[str]
) -> list[str]:
    """Full + delta to each destination during churn, then a last delta once capture has
    caught up (so the source then is the truth); returns the first destination's etl_ids."""
    slot = f"sw_{uuid.uuid4().hex[:10]}"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        writer = churn(cli, tmp / "ledger.jsonl", rate=200, seconds=10, seed=8)
        runs = [run for kind in ("full", "delta") for run in to_each(cli, dests, kind)]
        finish(writer, timeout=120)
        wait_caught_up(pg, slot, capture, timeout=120)
        runs += to_each(cli, dests, "delta")
    finally:
        capture.stop()
    first = runs[0 :: len(dests)]
    assert sum(first[1]["rows"].values()) > 0  # the first delta saw churn
    return [r["etl_id"] for r in first]


def reconstruct(cli: Cli, dest: str | Path, table: str, out: str, *more: str) -> dict[str, Any]:
    args = ("reconstruct", "--dest", str(dest), "--table", table, "--out", out, *more)
    result: dict[str, Any] = cli.json(*args)
    return result


def keyed(rows: list[dict[str, Any]], tenant_column: str = "tenant_id") -> Rows:
    """Rows by (tenant, id), entity columns only (the lake's metadata columns dropped)."""
    return {
        (row[tenant_column], row["id"]): {
            k: _normalise(v) for k, v in row.items() if k != tenant_column and k[0] != "_"
        }
        for row in rows
    }  # fmt: skip


def assert_equal(got: Rows, expected: Rows, what: str) -> None:
    assert set(got) == set(expected), what
    for key, row in expected.items():
        assert {k: got[key][k] for k in row} == row, (what, key)


def read_parquet(chain: Chain, out: str) -> list[dict[str, Any]]:
    if out.startswith("s3://"):
        fs = s3_filesystem(chain.stack.s3)
        rows: list[dict[str, Any]] = pq.read_table(out[5:], filesystem=fs).to_pylist()
        return rows
    return pq.read_table(out).to_pylist()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_every_table_equals_the_source_and_the_readme_sql(
    chain: Chain, where: str, tmp_path: Path
) -> None:
    dest = str(chain.local) if where == "local" else chain.s3
    for table in ENTITIES:
        out = (
            str(tmp_path / f"{table}.parquet")
            if where == "local"
            else f"{chain.s3}-out/{table}.parquet"
        )
        summary = reconstruct(chain.cli, dest, table, out)
        rows = read_parquet(chain, out)
        assert summary["rows_out"] == len(rows) == len(chain.truth[table]), table
        assert list(rows[0]) == summary["columns"] and summary["columns"][:2] == ["tenant_id", "id"]
        assert_equal(keyed(rows), chain.truth[table], f"{where} {table}")
        if where == "local":  # what a user gets from docs/guide.md's SQL over the same files
            assert [r["etl_id"] for r in summary["runs"]] == chain.runs
            assert_equal(
                keyed(readme_sql(chain.local, table), "_tenant_id"), chain.truth[table], table
            )
    if where == "s3":
        s3_filesystem(chain.stack.s3).delete_dir(f"{chain.s3[5:]}-out")


def readme_sql(lake: Path, table: str, runs: list[str] | None = None) -> list[dict[str, Any]]:
    files = [str(p) for p in lake_files(lake) if p.parent.parent.name == table]
    files = [f for f in files if runs is None or Path(f).parent.name in runs]
    relation = duckdb.sql(reconstruct_sql(read_parquet_rows(sorted(files))))
    assert relation is not None
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def test_as_of_a_middle_delta_equals_the_readme_sql_over_that_chain(
    chain: Chain, tmp_path: Path
) -> None:
    middle = chain.runs[1]
    out = tmp_path / "x.db"
    summary = reconstruct(chain.cli, chain.local, "comment", f"duckdb://{out}#c", "--as-of", middle)
    assert [r["etl_id"] for r in summary["runs"]] == chain.runs[:2]
    with duckdb.connect(str(out)) as con:
        got = con.sql("SELECT * FROM c")
        assert got is not None
        rows = [dict(zip(got.columns, r, strict=True)) for r in got.fetchall()]
    expected = keyed(readme_sql(chain.local, "comment", chain.runs[:2]), "_tenant_id")
    assert_equal(keyed(rows), expected, "comment as of the first delta")


def test_postgresql_target_equals_the_source_and_an_unfit_table_is_refused(chain: Chain) -> None:
    with fresh_database(chain.stack.pg, f"sw_recon_{uuid.uuid4().hex[:10]}") as pg:
        pw = pg.password.get_secret_value()
        url = f"postgresql://{pg.user}:{pw}@{pg.host}:{pg.port}/{pg.dbname}"
        summary = reconstruct(chain.cli, chain.local, "issue", f"{url}#public.issues")
        assert (
            summary["target"] == f"postgresql://{pg.user}:***@{url.partition('@')[2]}#public.issues"
        )
        again = reconstruct(chain.cli, chain.local, "issue", f"{url}#public.issues")  # replaces
        assert again["rows_out"] == summary["rows_out"] == len(chain.truth["issue"])
        assert_equal(keyed(pg_rows(pg.dsn(), "public.issues")), chain.truth["issue"], "postgres")
        proc = refused(chain.cli, chain.local, "user", f"{url}#public.issues")
        assert "table public.issues of" in proc.stderr and "missing ['account_id'" in proc.stderr
        # errors mask the whole user:password part of a URL (sluiceway.common.redact)
        assert f":{pw}@" not in proc.stderr and "//***@" in proc.stderr
        assert len(pg_rows(pg.dsn(), "public.issues")) == len(chain.truth["issue"])  # untouched


def pg_rows(dsn: str, table: str) -> list[dict[str, Any]]:
    with psycopg2.connect(dsn) as conn:
        cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        cur.execute(f"SELECT * FROM {table}")
        rows = [dict(r) for r in cur.fetchall()]
    conn.close()
    return rows


def refused(
    cli: Cli, dest: str | Path, table: str, out: str, *more: str
) -> subprocess.CompletedProcess[str]:
    proc = cli(
        "reconstruct", "--dest", str(dest), "--table", table, "--out", out, *more, check=False
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc


def _manifest(lake: Path, etl_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((lake / "_runs" / f"{etl_id}.json").read_text())
    return document


def _first_file(lake: Path, etl_id: str) -> tuple[str, dict[str, Any]]:
    tables = _manifest(lake, etl_id)["tables"]
    return next((t, i["files"][0]) for t, i in tables.items() if i["files"])


def missing_file(lake: Path, runs: list[str]) -> tuple[str, str]:
    table, entry = _first_file(lake, runs[1])
    (lake / entry["path"]).unlink()
    return table, f"file {lake / entry['path']} listed by run {runs[1]}'s manifest is missing"


def count_mismatch(lake: Path, runs: list[str]) -> tuple[str, str]:
    table, entry = _first_file(lake, runs[1])
    document = _manifest(lake, runs[1])
    document["tables"][table]["files"][0]["rows"] += 1
    document["tables"][table]["rows"] += 1
    (lake / "_runs" / f"{runs[1]}.json").write_text(json.dumps(document))
    rows = entry["rows"]
    return table, f"manifest lists {rows + 1} rows but the file's Parquet metadata says {rows}"


def run_named_by_root_missing(lake: Path, runs: list[str]) -> tuple[str, str]:
    (lake / "_runs" / f"{runs[1]}.json").unlink()
    return "issue", f"manifest.json names run {runs[1]} as previous but _runs/{runs[1]}.json"


def gap(lake: Path, runs: list[str]) -> tuple[str, str]:
    (lake / "_runs" / f"{runs[1]}.json").unlink()
    (lake / "manifest.json").unlink()
    return "issue", f"gap in the delta chain: run {runs[2]} starts "


def no_full_export(lake: Path, runs: list[str]) -> tuple[str, str]:
    (lake / "_runs" / f"{runs[0]}.json").unlink()
    return "issue", f"no full export at or before run {runs[2]}"


@pytest.mark.parametrize(
    "breaks", [missing_file, count_mismatch, run_named_by_root_missing, gap, no_full_export]
)
def test_a_broken_lake_is_refused_by_name_and_nothing_is_written(
    chain: Chain, tmp_path: Path, breaks: Any
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(chain.local, lake)
    table, message = breaks(lake, chain.runs)
    out = tmp_path / "out" / "t.parquet"
    proc = refused(chain.cli, lake, table, str(out))
    assert message in proc.stderr
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--table", "epic"), "table 'epic' is unknown; expected one of project, user"),
        (
            ("--table", "issue", "--as-of", "20000101T000000Z-0000"),
            "--as-of '20000101T000000Z-0000'",
        ),
    ],
)
def test_an_unknown_table_or_run_is_refused_by_name(
    chain: Chain, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    out = tmp_path / "t.db"
    proc = chain.cli(
        "reconstruct", "--dest", str(chain.local), "--out", f"duckdb://{out}", *args, check=False
    )
    assert proc.returncode == 3 and proc.stderr.startswith(f"error: {message}"), proc.stderr
    assert list(tmp_path.iterdir()) == []
