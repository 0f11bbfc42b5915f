"""A CSV run on the real stack: PostgreSQL -> capture -> Kafka -> faust -> sink -> CSV files.

The seed's descriptions hold quotes, commas, line breaks, backslashes and non-ASCII text;
they must come back through Python's csv module and DuckDB's CSV reader exactly as Data
pipeline writes them: line breaks as \\n, everything else unchanged.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from sluiceway.producers.source import source_tables
from sluiceway.sinks.csv_file import escape_line_breaks
from tests.catalogs import ENTITIES
from tests.conftest import Stack, isolated, lake_files

pytestmark = pytest.mark.integration
EXPORTED = "tenant-001"


@pytest.fixture(scope="module")
def exported(
    local_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Seed 2 tenants x 20 issues, capture them, export one tenant as CSV."""
    for _kafka, pg, cli in isolated(local_stack):
        cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "20", "--seed", "5")
        cli("capture", "--snapshot-only")
        lake = tmp_path_factory.mktemp("lake")
        spec_file = lake.parent / f"{lake.name}.json"
        spec = {"tenants": [EXPORTED], "destination": str(lake), "format": "csv"}
        spec_file.write_text(json.dumps(spec))
        result = cli.json("export", "start", "--spec", str(spec_file), "--wait", timeout=600)
        manifest = json.loads((lake / "_runs" / f"{result['etl_id']}.json").read_text())
        with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
            cur.execute("SELECT id, description FROM issues WHERE tenant_id = %s", (EXPORTED,))
            descriptions = dict(cur.fetchall())
            counts = {}
            for entity in ENTITIES:
                cur.execute(
                    f"SELECT count(*) FROM {source_tables()[entity]} WHERE tenant_id = %s",
                    (EXPORTED,),
                )
                counts[entity] = cur.fetchall()[0][0]
        conn.close()
        yield {
            "lake": lake,
            "result": result,
            "manifest": manifest,
            "descriptions": descriptions,
            "counts": counts,
        }


def python_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as src:
        return list(csv.DictReader(src, strict=True))


def duckdb_rows(files: list[Path]) -> list[dict[str, str | None]]:
    listed = ", ".join(f"'{f}'" for f in files)
    relation = duckdb.sql(
        f"SELECT * FROM read_csv([{listed}], header=true, all_varchar=true, "
        "delim=',', quote='\"', escape='\"', allow_quoted_nulls=false)"
    )
    assert relation is not None
    names = relation.columns
    return [dict(zip(names, values, strict=True)) for values in relation.fetchall()]


def escaped(text: str | None) -> str | None:
    return None if text is None else escape_line_breaks(text, "\\n")


def table_files(exported: dict[str, Any], entity: str) -> list[Path]:
    lake: Path = exported["lake"]
    return [lake / f["path"] for f in exported["manifest"]["tables"][entity]["files"]]


def test_files_match_the_manifest_and_the_source(exported: dict[str, Any]) -> None:
    lake: Path = exported["lake"]
    manifest = exported["manifest"]
    assert manifest["status"] == "complete" and manifest["spec"]["format"] == "csv"
    assert lake_files(lake, ".parquet") == []
    listed = sorted(p for e in ENTITIES for p in table_files(exported, e))
    assert listed == lake_files(lake, ".csv")
    assert all(p.name.startswith("part-") and p.suffix == ".csv" for p in listed)
    for entity in ENTITIES:
        info = manifest["tables"][entity]
        assert info["files"], f"no files for {entity}"
        for entry in info["files"]:
            path = lake / entry["path"]
            assert entry["bytes"] == path.stat().st_size
            assert entry["rows"] == len(python_rows(path))
        assert info["rows"] == exported["counts"][entity] == exported["result"]["rows"][entity]
        rows = duckdb_rows(table_files(exported, entity))
        assert len(rows) == info["rows"]
        assert {r["_tenant_id"] for r in rows} == {EXPORTED}


def test_every_file_is_rfc_4180_with_escaped_line_breaks(exported: dict[str, Any]) -> None:
    for entity in ENTITIES:
        for path in table_files(exported, entity):
            raw = path.read_bytes()
            header = raw.split(b"\r\n", 1)[0].decode()
            assert header.startswith('"') and '"_etl_id"' in header
            # escaping is on by default: CR and LF only ever appear as record ends
            assert raw.endswith(b"\r\n")
            assert raw.count(b"\n") == raw.count(b"\r") == raw.count(b"\r\n")
            assert raw.count(b"\r\n") == 1 + len(python_rows(path))


def test_descriptions_come_back_through_python_csv(
    exported: dict[str, Any],
) -> None:
    got = {
        int(r["id"]): r["description"]
        for path in table_files(exported, "issue")
        for r in python_rows(path)
    }
    expected: dict[int, str | None] = exported["descriptions"]
    assert got == {k: escaped(v or "") for k, v in expected.items()}
    tricky = "".join(v or "" for v in expected.values())
    assert all(c in tricky for c in ('"', ",", "\n", "\r", "\\", "é", "日"))  # seed covers them


def test_descriptions_come_back_through_duckdb(exported: dict[str, Any]) -> None:
    rows = duckdb_rows(table_files(exported, "issue"))
    got = {int(r["id"] or -1): r["description"] for r in rows}
    assert got == {k: escaped(v) for k, v in exported["descriptions"].items()}
