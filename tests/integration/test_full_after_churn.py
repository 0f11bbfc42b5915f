"""A full export taken while capture streams changes holds each live entity exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluiceway.common.kafka_io import load_run
from sluiceway.common.partitioning import partition_for
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.catalogs import ENTITIES
from tests.conftest import Cli
from tests.integration.capture_harness import (
    CaptureProcess,
    read_change_topics,
    settings_for_capture,
)
from tests.integration.test_capture import (
    churn,
    finish,
    snapshot_done,
    source_rows,
    wait_caught_up,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANT = "tenant-002"


# The exported tenant alone spread over every partition (a large tenant among small ones).
WIDE = {"SLUICEWAY_KAFKA_TENANT_SPREAD": json.dumps({TENANT: 3})}
# Read through the tenant offset index that capture keeps (what the index does not cover yet
# is scanned): the same rows must come out.
INDEXED = {"SLUICEWAY_KAFKA_TENANT_INDEX": "always"}


@pytest.mark.parametrize(
    "extra", [{}, WIDE, INDEXED], ids=["spread-1", "tenant-spread-3", "tenant-index"]
)
def test_full_export_after_updates_and_deletes_has_one_row_per_live_entity(
    cli: Cli,
    kafka: KafkaSettings,
    source_db: PostgresSettings,
    tmp_path: Path,
    unique: str,
    extra: dict[str, str],
) -> None:
    cli = Cli({**cli.env, **extra})
    cli("source", "seed", "--tenants", "3", "--issues-per-tenant", "40", "--seed", "12")
    slot = f"sw_{unique}"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        summary = finish(churn(cli, tmp_path / "ledger.jsonl", rate=800, seconds=4, seed=3), 60)
        assert summary["changes"] > 1000
        wait_caught_up(source_db, slot, capture, timeout=120)
        lake = tmp_path / "lake"
        result = cli.json("export", "start", "--tenant", TENANT, "--dest", str(lake), "--wait")
    finally:
        capture.stop()
    check_read_path(kafka, result["etl_id"], indexed=extra is INDEXED)
    assert tenant_partitions(kafka) == (
        {TENANT: {0, 1, 2}} if extra is WIDE else {TENANT: {partition_for(TENANT, 0, 3)}}
    ) | {t: {partition_for(t, 0, 3)} for t in ("tenant-001", "tenant-003")}
    truth = {
        k: v for k, v in source_rows(source_db).items() if k[1].startswith(f"{TENANT}/".encode())
    }
    etl_id = result["etl_id"]
    for entity in ENTITIES:
        got = lake_rows(lake, entity, etl_id)
        expected = {row["id"]: row for (e, _), row in truth.items() if e == entity}
        assert sorted(r["id"] for r in got) == sorted(expected), f"{entity}: ids differ or repeat"
        for row in got:
            assert row["updated"].timestamp() == expected[row["id"]]["updated"], entity
            assert row["_deleted"] is False
        assert result["rows"][entity] == len(expected)


def check_read_path(kafka: KafkaSettings, etl_id: str, *, indexed: bool) -> None:
    """The run read its partitions the way the setting said; through the index, it found
    the tenant's records in ranges the index covers, and read fewer offsets than a scan."""
    path = load_run(kafka, etl_id).read_path or {}
    assert path.get("path") == ("index" if indexed else "scan"), path
    if indexed:
        inputs = path["inputs"]
        assert inputs["tenant_records"] > 0, inputs
        assert inputs["uncovered_offsets"] < inputs["scanned_offsets"], inputs


def tenant_partitions(kafka: KafkaSettings) -> dict[str, set[int]]:
    """tenant -> the change-topic partitions its events were written to."""
    found: dict[str, set[int]] = {}
    for record in read_change_topics(kafka):
        found.setdefault(record.key.split(b"/")[0].decode(), set()).add(record.partition)
    return found


def lake_rows(lake: Path, entity: str, etl_id: str) -> list[dict[str, Any]]:
    files = sorted(lake.glob(f"*/*/*/daily-export/full-export/{entity}/{etl_id}/*.parquet"))
    if not files:
        return []
    return pa.concat_tables(pq.read_table(f) for f in files).to_pylist()
