"""The whole path on the real stack: PostgreSQL -> capture -> Kafka -> faust -> sink -> lake.

Truth comes from the source database and from the files read back; nothing is mocked.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluiceway.common.settings import PostgresSettings
from sluiceway.producers.source import source_tables
from tests.catalogs import ENTITIES
from tests.conftest import Stack, isolated, lake_files

pytestmark = pytest.mark.integration
EXPORTED = "tenant-002"
METADATA = {"_tenant_id", "_op", "_deleted", "_position", "_source_ts", "_etl_id"}


def source_ids(pg: PostgresSettings, entity: str, tenant: str) -> list[int]:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT id FROM {source_tables()[entity]} WHERE tenant_id = %s ORDER BY id", (tenant,)
        )
        ids = [r[0] for r in cur.fetchall()]
    conn.close()
    return ids


@pytest.fixture(scope="module")
def exported(
    local_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Seed 3 tenants, capture them, and export one: once for every test of this module."""
    for _kafka, pg, cli in isolated(local_stack):
        seeded = cli.json(
            "source", "seed", "--tenants", "3", "--issues-per-tenant", "40", "--seed", "11"
        )
        assert seeded["tenants"] == ["tenant-001", "tenant-002", "tenant-003"]
        cli("capture", "--snapshot-only")
        lake = tmp_path_factory.mktemp("lake")
        result = cli.json(
            "export",
            "start",
            "--tenant",
            EXPORTED,
            "--type",
            "full",
            "--dest",
            str(lake),
            "--wait",
            timeout=600,
        )
        yield {"result": result, "lake": lake, "pg": pg}


def test_lake_holds_exactly_the_exported_tenants_rows(exported: dict[str, Any]) -> None:
    source_db = exported["pg"]
    lake, result = Path(str(exported["lake"])), exported["result"]
    assert isinstance(result, dict)
    etl_id = result["etl_id"]
    for entity in ENTITIES:
        files = list(lake.glob(f"*/*/*/daily-export/full-export/{entity}/{etl_id}/part-*.parquet"))
        assert files, f"no files for {entity}"
        table = pa.concat_tables(pq.read_table(f) for f in files)
        expected = source_ids(source_db, entity, EXPORTED)
        ids = sorted(table.column("id").to_pylist())
        assert ids == expected, entity  # same count, same ids, no duplicates
        assert set(table.column("_tenant_id").to_pylist()) == {EXPORTED}
        assert set(table.column("_etl_id").to_pylist()) == {etl_id}
        assert set(table.schema.names) >= METADATA
        assert table.schema.field("_source_ts").type == pa.timestamp("us", tz="UTC")
        assert table.schema.field("created").type == pa.timestamp("us", tz="UTC")
        assert result["rows"][entity] == len(expected)


def test_no_other_tenant_anywhere_in_the_lake(exported: dict[str, Any]) -> None:
    lake = Path(str(exported["lake"]))
    tenants: Counter[str] = Counter()
    for path in lake_files(lake):
        tenants.update(pq.read_table(path, columns=["_tenant_id"]).column(0).to_pylist())
    assert set(tenants) == {EXPORTED}


def test_files_read_back_with_duckdb_and_match_the_manifest(exported: dict[str, Any]) -> None:
    lake, result = Path(str(exported["lake"])), exported["result"]
    assert isinstance(result, dict)
    etl_id = result["etl_id"]
    manifest = json.loads((lake / "_runs" / f"{etl_id}.json").read_text())
    latest = json.loads((lake / "manifest.json").read_text())
    assert latest["latest"]["etl_id"] == etl_id
    assert manifest["status"] == "complete"
    for entity, info in manifest["tables"].items():
        listed = [lake / f["path"] for f in info["files"]]
        assert all(p.is_file() for p in listed)
        for entry in info["files"]:
            assert pq.ParquetFile(lake / entry["path"]).metadata.num_rows == entry["rows"]
            assert (lake / entry["path"]).stat().st_size == entry["bytes"]
        on_disk = sorted(lake.glob(f"*/*/*/daily-export/full-export/{entity}/{etl_id}/*.parquet"))
        assert sorted(listed) == on_disk
        glob = f"{lake}/*/*/*/daily-export/full-export/{entity}/{etl_id}/*.parquet"
        count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()
        assert count == [(info["rows"],)]
    assert manifest["totals"]["rows"] == sum(i["rows"] for i in manifest["tables"].values())


def test_descriptions_survive_byte_for_byte(exported: dict[str, Any]) -> None:
    source_db = exported["pg"]
    lake = Path(str(exported["lake"]))
    with psycopg2.connect(source_db.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, description FROM issues WHERE tenant_id = %s", (EXPORTED,))
        expected = dict(cur.fetchall())
    conn.close()
    glob = f"{lake}/*/*/*/daily-export/full-export/issue/*/*.parquet"
    got = dict(duckdb.sql(f"SELECT id, description FROM read_parquet('{glob}')").fetchall())
    assert got == expected
