"""test_scale_out.py's full export and delta, read through the tenant offset index.

The same replacements (processors stopped and SIGKILLed mid-run, sinks killed between
publish and commit), with every run forced onto the index path
(``kafka.tenant_index: always``): the full run picks each key's last version from the
index's offsets, the delta reads its ranges forwards through it (processors/indexed.py).
The source database stays the truth: nothing missing, nothing doubled.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.catalogs import ENTITIES
from tests.conftest import Cli
from tests.integration.capture_harness import CaptureProcess, settings_for_capture
from tests.integration.test_capture import snapshot_done, wait_caught_up
from tests.integration.test_scale_out import (
    ISSUES_PER_TENANT,
    WORKER_ENV,
    announce,
    check_delta,
    check_full,
    reconstructed,
    run_with_replacements,
    source_keys,
    source_summaries,
    update_everything,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration
ALWAYS = {"SLUICEWAY_KAFKA_TENANT_INDEX": "always"}
# Through the index a chunk is one read and a delta's chunk is not cut into batches of
# poll_records: smaller chunks keep the runs' progress gradual, so that every move lands
# mid-run (the delta at 500 ended before its sink's next file, under load).
FULL_ENV = {**WORKER_ENV, "SLUICEWAY_PROCESSOR_FULL_CHUNK": "500"}
DELTA_ENV = {**WORKER_ENV, "SLUICEWAY_PROCESSOR_FULL_CHUNK": "100"}


def test_workers_replaced_throughout_runs_read_through_the_tenant_index(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli = Cli({**cli.env, **ALWAYS})
    indexed = kafka.model_copy(update={"tenant_index": "always"})
    cli("source", "seed", "--tenants", "3", "--issues-per-tenant", str(ISSUES_PER_TENANT),
        "--seed", "8", timeout=600)  # fmt: skip
    slot, lake = f"sw_{unique}", tmp_path / "lake"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 300, "the initial snapshot")
        full = announce(indexed, lake, "full")
        assert (full.read_path or {}).get("path") == "index", full.read_path
        run_with_replacements(cli, kafka, full, lake, tmp_path, FULL_ENV)
        before = source_keys(source_db)
        check_full(lake, full, before)

        updated, deleted = update_everything(source_db)
        assert updated == len(before["issue"]) and deleted > 0
        wait_caught_up(source_db, slot, capture, timeout=300)
        delta = announce(indexed, lake, "delta")
        assert (delta.read_path or {}).get("path") == "index", delta.read_path
        run_with_replacements(cli, kafka, delta, lake, tmp_path, DELTA_ENV)
    finally:
        capture.stop()
    after = source_keys(source_db)
    check_delta(lake, delta, before, after)
    for entity in ENTITIES:
        assert set(reconstructed(lake, entity)) == after[entity], entity
    assert reconstructed(lake, "issue", "summary") == source_summaries(source_db)
