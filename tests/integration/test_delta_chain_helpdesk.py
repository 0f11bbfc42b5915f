"""A full export and three deltas taken under churn reconstruct to the source, on the help
desk example (uuid keys, a composite key, tenant columns inside and outside the key, a
self-reference), as test_delta_chain.py does on the Jira example.

The source, read with SQL, is the truth: ``sluiceway reconstruct`` of every entity holds
exactly the exported tenant's rows, every cell equal."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli, settings_env
from tests.integration.helpdesk_truth import (
    OUTSIDE_KEY,
    export_tenants,
    full_identity,
    source_rows,
    write_catalog,
)
from tests.integration.test_capture import (
    churn,
    finish,
    snapshot_done,
    start_capture,
    wait_caught_up,
)
from tests.integration.test_helpdesk import parquet_differences
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANT = "2"


def test_full_plus_three_deltas_under_churn_equals_the_source(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    catalog_file = tmp_path / "catalog.yaml"
    catalog = write_catalog(catalog_file)
    cli = Cli(settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(catalog_file)}))
    cli("source", "seed", "--catalog", str(catalog_file), "--tenants", "3",
        "--rows-per-tenant", "30", "--seed", "21")  # fmt: skip
    assert OUTSIDE_KEY
    full_identity(source_db)  # deletes of tables keyed without the tenant carry it
    slot, lake = f"sw_{unique}", tmp_path / "lake"
    capture = start_capture(cli, tmp_path, slot)
    try:
        wait_for(lambda: capture.assert_alive() or snapshot_done(kafka, slot), 60, "the snapshot")
        writer = churn(cli, tmp_path / "ledger.jsonl", 200, 20, 5, "--catalog", str(catalog_file))
        runs = [
            export_tenants(cli, tmp_path, lake, t, (TENANT,)) for t in ("full", "delta", "delta")
        ]
        finish(writer, timeout=120)
        wait_caught_up(source_db, slot, capture, timeout=120)
        runs.append(export_tenants(cli, tmp_path, lake, "delta", (TENANT,)))
    finally:
        capture.stop()
    assert len({r["etl_id"] for r in runs}) == 4
    assert sum(sum(r["rows"].values()) for r in runs[1:]) > 0  # the deltas saw churn
    for entity in catalog.names:
        source = {k: v for k, v in source_rows(source_db, catalog, entity).items()
                  if k[0] == TENANT}  # fmt: skip
        assert source, entity
        out = tmp_path / f"{entity}.parquet"
        cli("reconstruct", "--dest", str(lake), "--table", entity, "--out", str(out))
        assert pq.read_metadata(out).num_rows == len(source), entity  # no key twice
        assert parquet_differences(catalog, entity, source, out) == [], entity
