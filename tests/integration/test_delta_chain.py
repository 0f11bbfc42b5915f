"""A full export and three deltas taken under churn reconstruct to the source tables.

Reconstruction is docs/guide.md's plain SQL (the text `sluiceway reconstruct` runs), in DuckDB
over the files: the latest `_position` per (`_tenant_id`, `id`) wins, and keys whose latest
row is a delete go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from sluiceway.reconstruct.sql import read_parquet_rows, reconstruct_sql
from sluiceway.settings import ENTITIES, KafkaSettings, PostgresSettings
from tests.conftest import Cli
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
TENANT = "tenant-001"


def reconstruct(lake: Path, entity: str) -> dict[int, dict[str, Any]]:
    files = sorted(str(p) for p in lake.rglob(f"*/{entity}/*/part-*.parquet"))
    if not files:
        return {}
    relation = duckdb.sql(reconstruct_sql(read_parquet_rows(files)))
    assert relation is not None
    names = relation.columns
    return {
        row[names.index("id")]: dict(zip(names, row, strict=True)) for row in relation.fetchall()
    }


def export(cli: Cli, lake: Path, run_type: str) -> dict[str, Any]:
    result: dict[str, Any] = cli.json(
        "export", "start", "--tenant", TENANT, "--type", run_type, "--dest", str(lake), "--wait"
    )
    return result


def test_full_plus_three_deltas_under_churn_equals_the_source(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli("source", "seed", "--tenants", "3", "--issues-per-tenant", "40", "--seed", "21")
    slot, lake = f"sw_{unique}", tmp_path / "lake"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        writer = churn(cli, tmp_path / "ledger.jsonl", rate=300, seconds=20, seed=5)
        runs = [export(cli, lake, "full"), export(cli, lake, "delta"), export(cli, lake, "delta")]
        finish(writer, timeout=120)
        wait_caught_up(source_db, slot, capture, timeout=120)
        runs.append(export(cli, lake, "delta"))
    finally:
        capture.stop()
    assert len({r["etl_id"] for r in runs}) == 4
    assert sum(sum(r["rows"].values()) for r in runs[1:3]) > 0  # the deltas saw churn
    deltas = list(lake.glob("*/*/*/daily-export/delta-export/*/*/*/*/*"))
    # a delta whose window saw no change has a manifest but no files
    assert {p.name for p in deltas} == {r["etl_id"] for r in runs[1:] if sum(r["rows"].values())}
    truth = source_rows(source_db)
    for entity in ENTITIES:
        expected = {
            row["id"]: row for (e, key), row in truth.items()
            if e == entity and key.startswith(f"{TENANT}/".encode())
        }  # fmt: skip
        got = reconstruct(lake, entity)
        assert set(got) == set(expected), entity
        for entity_id, row in expected.items():
            mine = {k: _normalise(got[entity_id][k]) for k in row}
            assert mine == row, (entity, entity_id)
