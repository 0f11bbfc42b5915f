"""Two processors and two sinks share a run; one of each is stopped and another started midway.

A full export, then a delta after every issue is updated and some comments deleted: the
lake read back equals the source (per table: count and (tenant, id) set), no row is written
twice, and the full export plus the delta reconstruct (the guide's SQL) to the source tables.
The workers are the real ``sluiceway process`` / ``sluiceway sink`` processes; the stopped
ones get SIGTERM and must finish cleanly (exit 0) before the run ends.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg2
import pytest

from processors.spec import parse_spec
from producers.source import TABLES
from sluiceway.export import scanned
from sluiceway.reconstruct.sql import read_parquet_rows, reconstruct_sql
from sluiceway.runner import start_run
from sluiceway.runs import RunRecord
from sluiceway.settings import ENTITIES, KafkaSettings, PostgresSettings, S3Settings
from tests.conftest import Cli
from tests.integration.capture_harness import CaptureProcess, settings_for_capture
from tests.integration.test_capture import snapshot_done, source_rows, wait_caught_up
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANTS = ["tenant-001", "tenant-002", "tenant-003"]
ISSUES_PER_TENANT = 12_000
# small batches and files: more commits and rotations to cross, and a run long enough to
# stop workers in the middle of it on a 2-core machine
WORKER_ENV = {
    "SLUICEWAY_PROCESSOR_POLL_RECORDS": "500",
    "SLUICEWAY_PROCESSOR_COMMIT_INTERVAL_S": "0.2",
    "SLUICEWAY_SINK_POLL_BATCH": "500",
    "SLUICEWAY_SINK_MAX_ROWS": "4000",
    "SLUICEWAY_SINK_ROW_GROUP_ROWS": "1000",
}
Key = tuple[str, int]


@dataclass
class Worker:
    stage: str  # process | sink
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class Crew:
    """The workers of one run, started and stopped by the test."""

    env: dict[str, str]
    run: RunRecord
    workdir: Path
    workers: list[Worker] = field(default_factory=list)

    def start(self, stage: str, name: str) -> Worker:
        log = self.workdir / f"{self.run.etl_id}-{name}.log"
        member = ["--member", name] if stage == "sink" else []
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sluiceway.cli", stage, "--run", self.run.etl_id, *member],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        worker = Worker(stage, name, proc, log)
        self.workers.append(worker)
        return worker

    def stop(self, worker: Worker) -> None:
        """SIGTERM, and the worker must leave cleanly while the run goes on."""
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(60)
        assert code == 0, f"{worker.name} exited {code} after SIGTERM:\n{worker.tail()}"

    def wait_all(self, timeout: float) -> None:
        for worker in self.workers:
            try:
                code = worker.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_all()
                raise AssertionError(f"{worker.name} still running:\n{worker.tail()}") from None
            assert code == 0, f"{worker.name} exited {code}:\n{worker.tail()}"

    def kill_all(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait(30)


def run_with_a_replacement(cli: Cli, kafka: KafkaSettings, run: RunRecord, workdir: Path) -> None:
    """2 processors + 2 sinks; between 15% and 75% of the run, one of each is stopped and a
    new one started; then every worker must finish on its own."""
    crew = Crew({**cli.env, **WORKER_ENV}, run, workdir)
    try:
        p1, s1 = crew.start("process", "p1"), crew.start("sink", "s1")
        crew.start("process", "p2")
        crew.start("sink", "s2")

        def midway() -> bool:
            done, total = scanned(run, kafka)
            assert done < 0.75 * total, "the run got past midway before the test could act"
            return done >= 0.15 * total

        wait_for(midway, 180, "the processors to get 15% through the run", poll=0.05)
        crew.stop(p1)
        crew.stop(s1)
        assert b'"status": "stopped"' in s1.log.read_bytes(), s1.tail()
        crew.start("process", "p3")
        crew.start("sink", "s3")
        crew.wait_all(300)
    finally:
        crew.kill_all()


def manifest_files(lake: Path, etl_id: str) -> dict[str, list[Path]]:
    manifest = json.loads((lake / "_runs" / f"{etl_id}.json").read_text())
    return {t: [lake / f["path"] for f in v["files"]] for t, v in manifest["tables"].items()}


def rows_of(files: list[Path]) -> list[tuple[str, int, bool]]:
    if not files:
        return []
    listed = ", ".join(f"'{f}'" for f in files)
    query = f"SELECT _tenant_id, id, _deleted FROM read_parquet([{listed}])"
    return [(t, int(i), bool(d)) for t, i, d in duckdb.sql(query).fetchall()]


def source_keys(pg: PostgresSettings) -> dict[str, set[Key]]:
    keys: dict[str, set[Key]] = {e: set() for e in ENTITIES}
    for (entity, key), _row in source_rows(pg).items():
        tenant, entity_id = key.decode().split("/")
        if tenant in TENANTS:
            keys[entity].add((tenant, int(entity_id)))
    return keys


def reconstructed_keys(lake: Path, entity: str) -> set[Key]:
    files = sorted(str(p) for p in lake.rglob(f"*/{entity}/*/part-*.parquet"))
    relation = duckdb.sql(reconstruct_sql(read_parquet_rows(files)))
    names = relation.columns
    return {
        (row[names.index("_tenant_id")], int(row[names.index("id")])) for row in relation.fetchall()
    }


def update_everything(pg: PostgresSettings) -> int:
    """A large delta: every issue updated, every tenth comment deleted. Returns changes."""
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"UPDATE {TABLES['issue']} SET summary = summary || ' (edited)'")
        changed = cur.rowcount
        cur.execute(f"DELETE FROM {TABLES['comment']} WHERE id % 10 = 0")
        changed += cur.rowcount
    conn.close()
    return int(changed)


def announce(kafka: KafkaSettings, lake: Path, run_type: str) -> RunRecord:
    spec = parse_spec({"tenants": TENANTS, "destination": str(lake), "type": run_type})
    run, _ = start_run(spec, kafka, S3Settings(), launch=False)
    return run


def test_two_workers_per_stage_with_one_of_each_replaced_midway(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli("source", "seed", "--tenants", "3", "--issues-per-tenant", str(ISSUES_PER_TENANT),
        "--seed", "7", timeout=600)  # fmt: skip
    slot, lake = f"sw_{unique}", tmp_path / "lake"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 300, "the initial snapshot")
        full = announce(kafka, lake, "full")
        run_with_a_replacement(cli, kafka, full, tmp_path)
        truth = source_keys(source_db)
        for entity, files in manifest_files(lake, full.etl_id).items():
            rows = rows_of(files)
            assert len(rows) == len(truth[entity]), entity  # no row twice, none missing
            assert {(t, i) for t, i, _ in rows} == truth[entity], entity

        assert update_everything(source_db) > ISSUES_PER_TENANT
        wait_caught_up(source_db, slot, capture, timeout=300)
        delta = announce(kafka, lake, "delta")
        run_with_a_replacement(cli, kafka, delta, tmp_path)
    finally:
        capture.stop()
    truth = source_keys(source_db)
    for entity, files in manifest_files(lake, delta.etl_id).items():
        rows = rows_of(files)
        assert len(rows) == len({(t, i) for t, i, _ in rows}), entity  # one change per key here
    assert sum(len(f) for f in manifest_files(lake, delta.etl_id).values()) > 0
    for entity in ENTITIES:
        assert reconstructed_keys(lake, entity) == truth[entity], entity
