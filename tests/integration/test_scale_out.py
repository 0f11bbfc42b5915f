"""Processors and sinks share a run while workers are stopped, crashed and replaced in it.

A full export, then a delta after every issue is updated and every tenth comment deleted.
In each run, with two processors and two sinks at a time (the real ``sluiceway process``
and ``sluiceway sink`` processes), the test replaces workers at five points:

1. a processor gets SIGTERM as it starts to join the group, and a new one starts;
2. a fifth through the run, another processor leaves (SIGTERM) and a new one joins;
3. the moment either sink publishes its next file it is killed (SIGKILL: between its
   publish and its commit, or just after) and restarted under its member id (whichever
   publishes first: a sink whose partitions' rows are all written would wait forever);
4. two fifths through, a processor with partitions left to end is killed (SIGKILL): its
   open transactions die with it, the others take its partitions over after the session
   timeout and fence them;
5. while the other sink publishes files it gets SIGTERM, and a third sink replaces it.

Workers stopped with SIGTERM must exit 0. The source database is the truth: the full
export holds each live row once; the change topics hold the whole update before the delta
is cut; the delta holds exactly the changed keys once (every issue updated, every deleted
comment as a delete); full + delta reconstruct to the source, values included.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings
from sluiceway.common.spec import parse_spec
from sluiceway.control.export import scanned
from sluiceway.control.runner import start_run
from sluiceway.producers.source import source_tables
from sluiceway.tools.reconstruct.sql import quote_identifier, read_parquet_rows, reconstruct_sql
from tests.catalogs import ENTITIES
from tests.conftest import Cli
from tests.integration.capture_harness import (
    CaptureProcess,
    change_topic_ends,
    settings_for_capture,
)
from tests.integration.test_capture import snapshot_done, source_rows, wait_caught_up
from tests.net import free_port, get
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANTS = ["tenant-001", "tenant-002", "tenant-003"]
ISSUES_PER_TENANT = 12_000
# small batches and files: more commits and rotations to cross, and a run long enough to
# replace workers in the middle of it on a 2-core machine
WORKER_ENV = {
    # a full run's processor reads each partition downwards in chunks of this many offsets
    # and commits after each: small chunks make its progress gradual (the moves below wait
    # for a fifth and two fifths of it) and hand over partitions half read
    "SLUICEWAY_PROCESSOR_FULL_CHUNK": "2000",
    "SLUICEWAY_PROCESSOR_POLL_RECORDS": "500",
    "SLUICEWAY_PROCESSOR_COMMIT_INTERVAL_S": "0.2",
    "SLUICEWAY_SINK_POLL_BATCH": "500",
    "SLUICEWAY_SINK_MAX_ROWS": "4000",
    "SLUICEWAY_SINK_ROW_GROUP_ROWS": "1000",
}
# A delta's processors fetch at most 100 records a batch, and through the tenant index
# read and commit chunks of 100 offsets: its progress is gradual and it lasts long enough
# for the five moves. With WORKER_ENV a help desk delta read through the index ended 2 s
# after move 3, before any processor with work was left to kill.
DELTA_ENV = {
    **WORKER_ENV,
    "SLUICEWAY_PROCESSOR_POLL_RECORDS": "100",
    "SLUICEWAY_PROCESSOR_FULL_CHUNK": "100",
}
# Each issue is edited three times before the delta, in three transactions: the delta holds
# its three versions in order (the reconstruction must take the last).
EDITS = 3
# what processors/main.py logs when it joins the group
JOINING = b"joining the group"
ROTATE = re.compile(rb"\brotate table=")
Key = tuple[Any, ...]  # (tenant, *record key): (tenant_id, id) on the Jira demo
ID = ("id",)  # the Jira demo's record key; the help desk passes each entity's own


@dataclass
class Worker:
    stage: str  # process | sink
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None  # a processor's health port
    killed: bool = False

    def text(self) -> bytes:
        return self.log.read_bytes() if self.log.exists() else b""

    def tail(self) -> str:
        return self.text().decode(errors="replace")[-3000:]

    def rotations(self) -> int:
        return len(ROTATE.findall(self.text()))

    def has_work(self) -> bool:
        """A live processor that owns partitions it has not ended (from its /metrics)."""
        if self.port is None or self.proc.poll() is not None:
            return False
        status, body = get(self.port, "/metrics")
        if status != 200:
            return False
        pending = (
            s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
            if s.name == "sluiceway_processor_partitions_pending"
        )
        return any(value > 0 for value in pending)


@dataclass
class Crew:
    """The workers of one run, started, stopped and killed by the test."""

    env: dict[str, str]
    run: RunRecord
    kafka: KafkaSettings
    lake: Path
    workdir: Path
    workers: list[Worker] = field(default_factory=list)

    def start(self, stage: str, name: str, member: str | None = None) -> Worker:
        log = self.workdir / f"{self.run.etl_id}-{name}.log"
        port = free_port() if stage == "process" else None
        extra = ["--member", member or name] if port is None else ["--metrics-port", str(port)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sluiceway.cli", stage, "--run", self.run.etl_id, *extra],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        worker = Worker(stage, name, proc, log, port)
        self.workers.append(worker)
        return worker

    def stop(self, worker: Worker) -> None:
        """SIGTERM, and the worker must leave cleanly while the run goes on."""
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(60)
        assert code == 0, f"{worker.name} exited {code} after SIGTERM:\n{worker.tail()}"

    def kill(self, worker: Worker) -> None:
        worker.proc.kill()
        worker.proc.wait(30)
        worker.killed = True

    def complete(self) -> bool:
        return (self.lake / "_runs" / f"{self.run.etl_id}.json").exists()

    def progress(self) -> float:
        done, total = scanned(self.run, self.kafka)
        return done / total if total else 1.0

    def before_the_end(self, check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
        """Wait for ``check()`` and return it; the run must not be complete by then (the
        move would test nothing)."""

        def ready() -> Any:
            assert not self.complete(), f"the run ended before {what}"
            return check()

        return wait_for(ready, timeout, what, poll=0.02)

    def soon(self, check: Callable[[], object], what: str, within: float) -> None:
        """Wait up to ``within`` seconds for ``check()`` (a sink whose partitions are all
        read publishes no more files), then go on; the run must still be incomplete."""
        with contextlib.suppress(AssertionError):  # the timeout: act now
            wait_for(lambda: check() or self.complete(), within, what, poll=0.02)
        assert not self.complete(), f"the run ended before {what}"

    def wait_all(self, timeout: float) -> None:
        for worker in self.workers:
            if worker.killed:
                continue
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


def replace_workers(crew: Crew) -> None:
    """The five moves of the module docstring, each waiting for its moment."""
    p1, p2 = crew.start("process", "p1"), crew.start("process", "p2")
    s1, s2 = crew.start("sink", "s1"), crew.start("sink", "s2")
    crew.before_the_end(lambda: JOINING in p1.text(), "p1's joining")
    crew.stop(p1)
    p3 = crew.start("process", "p3")

    crew.before_the_end(lambda: crew.progress() >= 0.2, "a fifth of the run")
    crew.stop(p2)
    p4 = crew.start("process", "p4")

    published = {s1.name: s1.rotations(), s2.name: s2.rotations()}

    def publisher() -> Worker | None:
        return next((s for s in (s1, s2) if s.rotations() > published[s.name]), None)

    crew.before_the_end(publisher, "a sink's next file")
    killed = publisher()
    assert killed is not None
    crew.kill(killed)
    crew.start("sink", f"{killed.name}-restarted", member=killed.name)
    other = s2 if killed is s1 else s1

    crew.before_the_end(lambda: crew.progress() >= 0.4, "two fifths of the run")
    owner = crew.before_the_end(
        lambda: next((p for p in (p3, p4) if p.has_work()), None),
        "p3 or p4 to own partitions it has not ended", timeout=60,
    )  # fmt: skip
    crew.kill(owner)
    crew.start("process", "p5")

    # within the session timeout of the killed processor, whose partitions wait meanwhile
    before = other.rotations()
    crew.soon(lambda: other.rotations() > before, f"{other.name}'s next file", within=5)
    crew.stop(other)
    assert b'"status": "stopped"' in other.text(), other.tail()
    crew.start("sink", "s3")


def run_with_replacements(
    cli: Cli, kafka: KafkaSettings, run: RunRecord, lake: Path, workdir: Path,
    worker_env: Mapping[str, str] = WORKER_ENV,
) -> None:  # fmt: skip
    crew = Crew({**cli.env, **worker_env}, run, kafka, lake, workdir)
    try:
        replace_workers(crew)
        crew.wait_all(300)
    finally:
        crew.kill_all()


def manifest_files(lake: Path, etl_id: str) -> dict[str, list[Path]]:
    manifest = json.loads((lake / "_runs" / f"{etl_id}.json").read_text())
    return {t: [lake / f["path"] for f in v["files"]] for t, v in manifest["tables"].items()}


def rows_of(files: list[Path], key: Sequence[str] = ID) -> list[tuple[Any, ...]]:
    """(tenant, *record key, deleted) of every row of the files, duplicates kept."""
    if not files:
        return []
    columns = ", ".join(quote_identifier(c) for c in ("_tenant_id", *key, "_deleted"))
    query = f"SELECT {columns} FROM {read_parquet_rows([str(f) for f in files])}"
    return [(*row[:-1], bool(row[-1])) for row in duckdb.sql(query).fetchall()]


def source_keys(pg: PostgresSettings) -> dict[str, set[Key]]:
    keys: dict[str, set[Key]] = {e: set() for e in ENTITIES}
    for (entity, key), _row in source_rows(pg).items():
        tenant, entity_id = key.decode().split("/")
        if tenant in TENANTS:
            keys[entity].add((tenant, int(entity_id)))
    return keys


def source_summaries(pg: PostgresSettings) -> dict[Key, str]:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT tenant_id, id, summary FROM {source_tables()['issue']}")
        found = {(t, int(i)): s for t, i, s in cur.fetchall() if t in TENANTS}
    conn.close()
    return found


def reconstructed(
    lake: Path, entity: str, column: str = "id", key: Sequence[str] = ID
) -> dict[Key, object]:
    """(tenant, *record key) -> ``column`` of the entity's reconstruct over every run."""
    files = sorted(str(p) for p in lake.rglob(f"*/{entity}/*/part-*.parquet"))
    relation = duckdb.sql(reconstruct_sql(read_parquet_rows(files), tuple(key)))
    rows = relation.select("_tenant_id", *key, column).fetchall()
    return {tuple(row[:-1]): row[-1] for row in rows}


def update_everything(pg: PostgresSettings, edits: int = 1) -> tuple[int, int]:
    """A large delta: every issue updated in each of ``edits`` transactions, then every
    tenth comment deleted in one more. Returns (issues updated by each edit, comments
    deleted)."""
    conn = psycopg2.connect(pg.dsn())
    try:
        for _ in range(edits):
            with conn, conn.cursor() as cur:  # one transaction each
                cur.execute(
                    f"UPDATE {source_tables()['issue']} SET summary = summary || ' (edited)'"
                )
                updated = cur.rowcount
        with conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM {source_tables()['comment']} WHERE id % 10 = 0")
            deleted = cur.rowcount
    finally:
        conn.close()
    return int(updated), int(deleted)


def announce(
    kafka: KafkaSettings, lake: Path, run_type: str, tenants: Sequence[str] = TENANTS
) -> RunRecord:
    spec = parse_spec({"tenants": list(tenants), "destination": str(lake), "type": run_type})
    run, _ = start_run(spec, kafka, S3Settings(), launch=False)
    return run


def check_full(lake: Path, full: RunRecord, truth: dict[str, set[Key]],
               keys: Mapping[str, Sequence[str]] | None = None) -> None:  # fmt: skip
    """``keys``: per entity, its record key columns (default: ``id``)."""
    for entity, files in manifest_files(lake, full.etl_id).items():
        rows = rows_of(files, keys[entity] if keys else ID)
        assert len(rows) == len(truth[entity]), entity  # no row twice, none missing
        assert {row[:-1] for row in rows} == truth[entity], entity


def check_delta(lake: Path, delta: RunRecord, before: dict[str, set[Key]],
                after: dict[str, set[Key]], changed: tuple[str, str] = ("issue", "comment"),
                keys: Mapping[str, Sequence[str]] | None = None,
                versions: int = 1) -> None:  # fmt: skip
    """The delta holds exactly the changes: every row of ``changed[0]`` (every issue) as
    ``versions`` updates, every deleted row of ``changed[1]`` (comments) as one delete,
    nothing of the other entities."""
    files = manifest_files(lake, delta.etl_id)
    updated, deleted = changed
    rows = {e: rows_of(files[e], keys[e] if keys else ID) for e in before}
    counts = collections.Counter(row[:-1] for row in rows[updated] if not row[-1])
    assert len(rows[updated]) == versions * len(after[updated]), (
        f"{updated}: an update is missing or doubled"
    )
    assert set(counts) == after[updated] and set(counts.values()) == {versions}, counts
    gone = before[deleted] - after[deleted]
    assert len(rows[deleted]) == len(gone), f"{deleted}: a delete is missing or doubled"
    assert {row[:-1] for row in rows[deleted] if row[-1]} == gone, f"{deleted}: a delete is missing"
    assert not any(rows[e] for e in before if e not in changed)


def test_workers_replaced_throughout_a_full_export_and_its_delta(
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
        run_with_replacements(cli, kafka, full, lake, tmp_path)
        before = source_keys(source_db)
        check_full(lake, full, before)

        ends = change_topic_ends(kafka, ("issue", "comment"))
        updated, deleted = update_everything(source_db, EDITS)
        assert updated == len(before["issue"]) and deleted > 0
        wait_caught_up(source_db, slot, capture, timeout=300)
        # the delta's cut is taken now: the whole transaction must be on the change topics
        grown = {e: n - ends[e] for e, n in change_topic_ends(kafka, tuple(ends)).items()}
        # a delete and its tombstone
        assert grown == {"issue": EDITS * updated, "comment": 2 * deleted}
        delta = announce(kafka, lake, "delta")
        run_with_replacements(cli, kafka, delta, lake, tmp_path, DELTA_ENV)
    finally:
        capture.stop()
    after = source_keys(source_db)
    check_delta(lake, delta, before, after, versions=EDITS)
    for entity in ENTITIES:
        assert set(reconstructed(lake, entity)) == after[entity], entity
    assert reconstructed(lake, "issue", "summary") == source_summaries(source_db)
