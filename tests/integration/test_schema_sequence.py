"""Four source schema changes in a row while capture runs and churn writes, a delta after
each, on the help desk's schema-per-tenant entities (one schema per organisation):

1. a column added to every tenant's ``articles`` table (and filled);
2. its type widened from ``integer`` to ``bigint`` (and values past 2**31 written);
3. the column dropped;
4. a new table matching the catalog's rule: organisation 4 had no ``article_votes`` table
   until now; capture must find it, add it to its publication and carry its rows.

After each delta, ``sluiceway reconstruct`` of every entity equals the source read with
SQL in every tenant schema, cell for cell, no row missing or twice, and the added column
equals the source's while it exists. Each Parquet file holds one schema version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from sluiceway.common.catalog import Catalog
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli, settings_env
from tests.integration.helpdesk_truth import export_tenants
from tests.integration.test_capture import (
    churn,
    finish,
    snapshot_done,
    start_capture,
    wait_caught_up,
)
from tests.integration.test_helpdesk import parquet_differences
from tests.integration.test_tenant_schemas import (
    _execute,
    _rows,
    published,
    source_rows,
    tenant_schemas,
    write_catalog,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANTS = ("1", "2", "3", "4")
CHURNED = "1,2,3"  # organisation 4 has no votes table until the last change
SCHEMAS = [f"org_{t}" for t in TENANTS]


def _each(template: str) -> list[str]:
    return [template.format(s=s) for s in SCHEMAS]


CHANGES: list[list[str]] = [
    [*_each("ALTER TABLE {s}.articles ADD COLUMN extra integer"),
     *_each("UPDATE {s}.articles SET extra = id % 1000 WHERE id % 3 = 0")],
    [*_each("ALTER TABLE {s}.articles ALTER COLUMN extra TYPE bigint"),
     *_each("UPDATE {s}.articles SET extra = 3000000000 + id WHERE id % 2 = 0")],
    _each("ALTER TABLE {s}.articles DROP COLUMN extra"),
    ["CREATE TABLE org_4.article_votes (LIKE org_1.article_votes INCLUDING ALL)",
     "INSERT INTO org_4.article_votes (article_id, voter_id, helpful, weight, voted_at) "
     "SELECT a.id, gen_random_uuid(), a.id % 2 = 0, 0.5, now() FROM org_4.articles a"],
]  # fmt: skip


def _extra_in_source(pg: PostgresSettings) -> dict[tuple[str, str], Any] | None:
    """(tenant, article id) -> extra, while the column exists; None once dropped."""
    found = _rows(pg, sql.SQL(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'articles' AND column_name = 'extra'"))  # fmt: skip
    if found[0][0] == 0:
        return None
    out: dict[tuple[str, str], Any] = {}
    for schema in SCHEMAS:
        query = sql.SQL("SELECT id::text, extra FROM {}").format(sql.Identifier(schema, "articles"))
        out.update({(schema.removeprefix("org_"), i): x for i, x in _rows(pg, query)})
    return out


def _lake_equals_source(
    cli: Cli, catalog: Catalog, pg: PostgresSettings, lake: Path, out: Path
) -> None:
    for entity in catalog.names:
        target = out / f"{entity}.parquet"
        target.unlink(missing_ok=True)
        cli("reconstruct", "--dest", str(lake), "--table", entity, "--out", str(target))
        source = source_rows(pg, catalog, entity)
        assert pq.read_metadata(target).num_rows == len(source), entity
        assert parquet_differences(catalog, entity, source, target) == []
    extra = _extra_in_source(pg)
    rows = pq.read_table(out / "article.parquet").to_pylist()
    if extra is not None:
        assert {(r["tenant_id"], str(r["id"])): r["extra"] for r in rows} == extra
        assert any(v is not None for v in extra.values())


def test_four_schema_changes_under_churn_each_delta_reconstructs_to_the_source(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    catalog_file = tmp_path / "catalog.yaml"
    catalog = write_catalog(catalog_file)
    cli = Cli(settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(catalog_file)}))
    cli("source", "seed", "--catalog", str(catalog_file), "--tenants", "4",
        "--rows-per-tenant", "12", "--seed", "9")  # fmt: skip
    assert tenant_schemas(source_db) == SCHEMAS
    _execute(source_db, "DROP TABLE org_4.article_votes")
    slot, lake, out = f"sw_{unique}", tmp_path / "lake", tmp_path / "out"
    out.mkdir()
    capture = start_capture(cli, tmp_path, slot, SLUICEWAY_CAPTURE_DISCOVER_S="3")
    try:
        wait_for(lambda: capture.assert_alive() or snapshot_done(kafka, slot), 60, "the snapshot")
        export_tenants(cli, tmp_path, lake, "full", TENANTS)
        _lake_equals_source(cli, catalog, source_db, lake, out)
        for step, statements in enumerate(CHANGES):
            ledger = tmp_path / f"ledger-{step}.jsonl"
            writer = churn(cli, ledger, 60, 8, 50 + step, "--catalog", str(catalog_file),
                           "--tenants", CHURNED)  # fmt: skip
            wait_for(lambda: ledger.exists() and ledger.stat().st_size > 0, 60, "churn")  # noqa: B023
            _execute(source_db, *statements)  # while churn writes
            if step == len(CHANGES) - 1:
                wait_for(lambda: capture.assert_alive() or published(source_db, "org_4"),
                         60, "org_4's new table in the publication")  # fmt: skip
                _execute(source_db, "UPDATE org_4.article_votes SET weight = 0.75")
            finish(writer, timeout=120)
            wait_caught_up(source_db, slot, capture, timeout=120)
            delta = export_tenants(cli, tmp_path, lake, "delta", TENANTS)
            assert sum(delta["rows"].values()) > 0, statements[0]
            _lake_equals_source(cli, catalog, source_db, lake, out)
    finally:
        capture.stop()
    versions = {
        str(pq.read_schema(p).field("extra").type) if "extra" in pq.read_schema(p).names else None
        for p in lake.rglob("*/article/*/part-*.parquet")
    }
    assert versions == {None, "int32", "int64"}, versions  # one schema a file, three versions
    # organisation 4's new table had rows, and the lake compared equal above
    votes = {key[0] for key in source_rows(source_db, catalog, "vote")}
    assert votes == set(TENANTS), votes
