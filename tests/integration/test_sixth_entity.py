"""A sixth entity on the real stack: the Jira example plus ``attachment`` (rows referencing an
issue), named by ``pg.catalog``. Capture takes its table, and an export that opts a project
out leaves out that project's issues' attachments, which hard-wired entity lists used to
export silently. Truth is the source database and the files read back."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.catalogs import with_attachment
from tests.conftest import Cli, Stack, fresh_database, settings_env

pytestmark = pytest.mark.integration
TENANT = "tenant-001"


def _add_attachments(pg: PostgresSettings) -> None:
    """Two attachments on every issue of the tenant, ids 1..n."""
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO attachments (tenant_id, id, issue_id, author_id, file_name, size_bytes,"
            " created, updated) SELECT tenant_id, row_number() OVER (ORDER BY id, n), id,"
            " creator_id, 'f' || id || '-' || n || '.png', 100 * n, created, updated"
            " FROM issues, generate_series(1, 2) AS n WHERE tenant_id = %s",
            (TENANT,),
        )
    conn.close()


def _source(pg: PostgresSettings, sql: str, *extra: object) -> list[tuple[object, ...]]:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(sql, (TENANT, *extra))
        rows = cur.fetchall()
    conn.close()
    return rows


def _lake_ids(lake: Path, entity: str, etl_id: str) -> list[int]:
    files = list(lake.glob(f"*/*/*/daily-export/full-export/{entity}/{etl_id}/part-*.parquet"))
    assert files, f"no files for {entity}"
    table = pa.concat_tables(pq.read_table(f) for f in files)
    return sorted(table.column("id").to_pylist())


def test_opt_out_cascades_to_a_sixth_entity_and_restore_loads_it(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, local_stack: Stack,
    unique: str,
) -> None:  # fmt: skip
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(with_attachment().to_yaml())
    cli = Cli(settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(catalog)}))
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "30", "--seed", "5")
    _add_attachments(source_db)
    [(opted,)] = _source(
        source_db, "SELECT key FROM projects WHERE tenant_id = %s ORDER BY id LIMIT 1"
    )
    cli("capture", "--snapshot-only")
    spec = tmp_path / "run.yaml"
    spec.write_text(f"tenants: [{TENANT}]\nopt_out: [{opted}]\ndestination: {tmp_path / 'lake'}\n")
    result = cli.json("export", "start", "--spec", str(spec), "--wait", timeout=600)
    kept = _source(
        source_db,
        "SELECT a.id FROM attachments a JOIN issues i USING (tenant_id) "
        "WHERE a.issue_id = i.id AND a.tenant_id = %s AND i.project_key <> %s ORDER BY a.id",
        opted,
    )
    [(total,)] = _source(source_db, "SELECT count(*) FROM attachments WHERE tenant_id = %s")
    assert 0 < len(kept) < total  # the opt-out leaves some out, and some in
    assert _lake_ids(tmp_path / "lake", "attachment", result["etl_id"]) == [r[0] for r in kept]
    rows = "SELECT * FROM attachments WHERE tenant_id = %s AND id = ANY(%s) ORDER BY id"
    with fresh_database(local_stack.pg, f"sw_restore_{unique}") as target:
        restored = cli.json(
            "restore", "--from", str(tmp_path / "lake"), "--target-dsn", target.dsn()
        )
        assert restored["rows"]["attachment"] == len(kept)
        ids = [r[0] for r in kept]
        assert _source(target, rows, ids) == _source(source_db, rows, ids)
