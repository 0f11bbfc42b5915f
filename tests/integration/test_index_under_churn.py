"""One tenant among several, exported through the tenant index while churn goes on.

A full export and two deltas of one tenant, every run forced onto the index path
(``kafka.tenant_index: always``), taken while ``sluiceway source churn`` updates, inserts
and deletes rows of every tenant. Mid-way through the full run, a processor that owns
partitions it has not ended is SIGKILLed and a new one joins. The source database is the
truth: full + deltas reconstruct to the tenant's rows, values included, each key once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.catalogs import ENTITIES
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
from tests.integration.test_delta_chain import reconstruct
from tests.integration.test_full_after_churn import lake_rows
from tests.integration.test_scale_out import WORKER_ENV, Crew, announce
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANT = "tenant-002"
ALWAYS = {"SLUICEWAY_KAFKA_TENANT_INDEX": "always"}
# small chunks: the full run's progress is gradual, so the kill lands mid-run
ENV = {**WORKER_ENV, **ALWAYS, "SLUICEWAY_PROCESSOR_FULL_CHUNK": "200"}


def run_killing_a_processor(cli: Cli, kafka: KafkaSettings, run: RunRecord, lake: Path,
                            workdir: Path) -> None:  # fmt: skip
    crew = Crew({**cli.env, **ENV}, run, kafka, lake, workdir)
    try:
        first, second = crew.start("process", "p1"), crew.start("process", "p2")
        crew.start("sink", "s1")
        crew.before_the_end(lambda: crew.progress() >= 0.1, "a tenth of the run")
        owner = wait_for(
            lambda: next((p for p in (first, second) if p.has_work()), None),
            60, "a processor owning partitions it has not ended",
        )  # fmt: skip
        assert not crew.complete(), "the run ended before the kill"
        crew.kill(owner)
        crew.start("process", "p3")
        crew.wait_all(300)
    finally:
        crew.kill_all()


def run_plainly(cli: Cli, kafka: KafkaSettings, run: RunRecord, lake: Path, workdir: Path) -> None:
    crew = Crew({**cli.env, **ENV}, run, kafka, lake, workdir)
    try:
        crew.start("process", "p1")
        crew.start("sink", "s1")
        crew.wait_all(300)
    finally:
        crew.kill_all()


def test_one_tenant_through_the_index_under_churn_with_a_processor_killed(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli = Cli({**cli.env, **ALWAYS})
    indexed = kafka.model_copy(update={"tenant_index": "always"})
    cli("source", "seed", "--tenants", "4", "--issues-per-tenant", "3000", "--seed", "31",
        timeout=600)  # fmt: skip
    slot, lake = f"sw_{unique}", tmp_path / "lake"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    runs: list[RunRecord] = []
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 300, "the initial snapshot")
        writer = churn(cli, tmp_path / "ledger.jsonl", rate=300, seconds=25, seed=9)
        runs.append(announce(indexed, lake, "full", [TENANT]))
        run_killing_a_processor(cli, kafka, runs[-1], lake, tmp_path)
        runs.append(announce(indexed, lake, "delta", [TENANT]))
        run_plainly(cli, kafka, runs[-1], lake, tmp_path)
        assert finish(writer, timeout=120)["changes"] > 1000
        wait_caught_up(source_db, slot, capture, timeout=120)
        runs.append(announce(indexed, lake, "delta", [TENANT]))
        run_plainly(cli, kafka, runs[-1], lake, tmp_path)
    finally:
        capture.stop()
    assert [(r.read_path or {}).get("path") for r in runs] == ["index"] * 3
    assert runs[0].read_path and runs[0].read_path["inputs"]["tenant_records"] > 0
    truth = source_rows(source_db)
    for entity in ENTITIES:
        expected = {
            row["id"]: row for (e, key), row in truth.items()
            if e == entity and key.startswith(f"{TENANT}/".encode())
        }  # fmt: skip
        full_ids = [r["id"] for r in lake_rows(lake, entity, runs[0].etl_id)]
        assert len(full_ids) == len(set(full_ids)), f"{entity}: the full run doubled a key"
        got = reconstruct(lake, entity)
        assert set(got) == set(expected), entity
        for entity_id, row in expected.items():
            mine = {k: _normalise(got[entity_id][k]) for k in row}
            assert mine == row, (entity, entity_id)
