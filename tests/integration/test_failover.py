"""Failover on the project's own three-node SASL_SSL cluster (combined brokers and KRaft
voters): a broker down for 30 s under 2,000 changes/s of capture; a full export of three
tenants with two processors and two sinks while one broker is SIGKILLed, and another once
the first is back; a voter SIGKILLed during a delta run. Every change reaches the topics
once, and the lake holds every source row once and reconstructs to the source."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluiceway.common.kafka_io import admin
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.tools.reconstruct.sql import read_parquet_rows, reconstruct_sql
from tests.catalogs import ENTITIES
from tests.conftest import Cli, Stack, fresh_database, lake_files
from tests.integration.capture_harness import CaptureProcess, settings_for_capture
from tests.integration.cluster import Cluster
from tests.integration.test_capture import (
    _normalise,
    churn,
    finish,
    ledger_ops,
    read_change_topics,
    snapshot_done,
    source_rows,
    streamed_ops,
    wait_caught_up,
)
from tests.integration.test_end_to_end import source_ids
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANTS = ("tenant-001", "tenant-002", "tenant-003")
RESTARTS = 5  # the test's own supervision: a worker exiting non-zero starts again
RESTART_AFTER_S = 5.0


@pytest.fixture
def setup(
    cluster: Cluster, local_stack: Stack, unique: str
) -> Iterator[tuple[Cli, PostgresSettings]]:
    with fresh_database(local_stack.pg, f"sw_test_{unique}") as pg:
        env = {
            **os.environ, **cluster.env, "SLUICEWAY_KAFKA_TOPIC_PREFIX": f"t{unique}.sw.",
            "SLUICEWAY_PG_DBNAME": pg.dbname, "SLUICEWAY_PG_PORT": str(pg.port),
        }  # fmt: skip
        yield Cli(env), pg


class Workers:
    """Two processors and two sinks of one run, restarted when they exit non-zero."""

    def __init__(self, cli: Cli, etl_id: str, logs: Path) -> None:
        self.cli, self.etl_id, self.logs = cli, etl_id, logs
        self.procs = {f"{stage}-{i}": self._start(f"{stage}-{i}") for stage in ("process", "sink")
                      for i in (1, 2)}  # fmt: skip
        self.restarts = dict.fromkeys(self.procs, 0)
        self.failed_at: dict[str, float] = {}

    def _start(self, name: str) -> subprocess.Popen[bytes]:
        stage = name.split("-")[0]
        out = (self.logs / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "sluiceway.cli", stage, "--run", self.etl_id],
            env=self.cli.env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def all_done(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() in (None, 0):
                continue
            failed_at = self.failed_at.setdefault(name, time.monotonic())
            if time.monotonic() - failed_at < RESTART_AFTER_S:  # as a supervisor's backoff
                continue
            assert self.restarts[name] < RESTARTS, f"{name} kept failing; see {self.logs}"
            self.restarts[name] += 1
            del self.failed_at[name]
            self.procs[name] = self._start(name)
        return all(proc.poll() == 0 for proc in self.procs.values())

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_full_export_survives_two_broker_kills(
    cluster: Cluster, setup: tuple[Cli, PostgresSettings], tmp_path: Path
) -> None:
    cli, pg = setup
    cli("source", "seed", "--tenants", "3", "--issues-per-tenant", "600", "--seed", "7")
    cli("capture", "--snapshot-only")
    lake = tmp_path / "lake"
    tenants = [arg for t in TENANTS for arg in ("--tenant", t)]
    started = cli.json(
        "export", "start", *tenants, "--type", "full", "--dest", str(lake), "--no-launch"
    )
    workers = Workers(cli, started["etl_id"], tmp_path)
    try:
        cluster.node(2).kill()
        cluster.node(2).wait(cluster.node(2).start())
        wait_for(cluster.in_sync, 180, "broker 2 back in every ISR")
        cluster.node(3).kill()
        wait_for(workers.all_done, 600, "every worker to finish the run")
    finally:
        workers.stop()
        third = cluster.node(3)
        third.wait(third.start())
    _assert_lake_is_the_source(lake, pg, started["etl_id"])


def _assert_lake_is_the_source(lake: Path, pg: PostgresSettings, etl_id: str) -> None:
    files = lake_files(lake)
    for entity in ENTITIES:
        parts = [f for f in files if f"/{entity}/{etl_id}/" in str(f)]
        table: Any = pa.concat_tables(pq.read_table(f) for f in parts) if parts else None
        assert table is not None, f"no files for {entity}"
        rows = list(zip(table.column("_tenant_id").to_pylist(), table.column("id").to_pylist(),
                        strict=True))  # fmt: skip
        assert len(rows) == len(set(rows)), f"{entity}: a row written twice within the run"
        for tenant in TENANTS:
            ids = sorted(i for t, i in rows if t == tenant)
            assert ids == source_ids(pg, entity, tenant), (entity, tenant)


def _kafka(env: dict[str, str]) -> KafkaSettings:
    """The cluster's client settings (SASL_SSL, the test's topic prefix) from ``env``."""
    names = {k.removeprefix("SLUICEWAY_KAFKA_").lower(): v for k, v in env.items()
             if k.startswith("SLUICEWAY_KAFKA_")}  # fmt: skip
    return KafkaSettings.model_validate(
        {k: v for k, v in names.items() if k in KafkaSettings.model_fields}
    )


class SupervisedCapture(CaptureProcess):
    """Capture restarted when it exits non-zero, as a supervisor would; exit 0 is final."""

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() not in (None, 0):
            assert self.starts <= RESTARTS, f"capture kept failing:\n{self.log.read_text()[-3000:]}"
            self.start()


def test_capture_under_churn_rides_out_a_broker_down_for_30s(
    cluster: Cluster, setup: tuple[Cli, PostgresSettings], tmp_path: Path, unique: str
) -> None:
    """Item 5 (a): a broker SIGKILLed while capture streams 2,000 changes/s, started again
    30 s later: every committed change reaches the change topics once, in commit order."""
    cli, pg = setup
    kafka = _kafka(cli.env)
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "40", "--seed", "9")
    slot = f"sw_{unique}"
    capture = SupervisedCapture(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    broker = cluster.node(2)
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 120, "the initial snapshot")
        ledger = tmp_path / "ledger.jsonl"
        writer = churn(cli, ledger, rate=2000, seconds=50, seed=int(unique[:6], 16) % 1000)
        started = time.monotonic()
        wait_for(lambda: time.monotonic() - started >= 8, 20, "churn under way")
        broker.kill()
        down_at = time.monotonic()
        wait_for(lambda: time.monotonic() - down_at >= 30, 40, "the broker down for 30 s")
        broker.wait(broker.start())
        summary = finish(writer, timeout=240)
        assert summary["changes"] >= 50_000  # about 2,000 changes/s while the broker was down
        wait_caught_up(pg, slot, capture, timeout=300)
    finally:
        capture.stop()
        if not broker.status().running:
            broker.wait(broker.start())
    print(f"capture started {capture.starts} times")
    expected = ledger_ops(ledger)
    got, _repeats = streamed_ops(read_change_topics(kafka, timeout=180))
    missing = [k for k in expected if got.get(k) != expected[k]]
    assert not missing, f"{len(missing)} keys differ, e.g. {missing[0]}"
    assert set(got) <= set(expected)
    wait_for(cluster.in_sync, 180, "broker 2 back in every ISR")


def test_a_delta_run_rides_out_losing_a_controller_voter(
    cluster: Cluster, setup: tuple[Cli, PostgresSettings], tmp_path: Path, unique: str
) -> None:
    """Item 5 (c): the nodes are combined brokers and KRaft voters; one voter is SIGKILLed
    while a delta run of three tenants is processed and sunk, and started again later. The
    full export plus the delta reconstruct to the source."""
    cli, pg = setup
    kafka = _kafka(cli.env)
    cli("source", "seed", "--tenants", "3", "--issues-per-tenant", "200", "--seed", "11")
    slot, lake = f"sw_{unique}", tmp_path / "lake"
    capture = SupervisedCapture(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    voter = cluster.node(1)
    tenants = [arg for t in TENANTS for arg in ("--tenant", t)]
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 120, "the initial snapshot")
        cli("export", "start", *tenants, "--type", "full", "--dest", str(lake), "--wait",
            "--timeout", "600")  # fmt: skip
        _change_every_table(pg)
        wait_caught_up(pg, slot, capture, timeout=180)
        delta = cli.json(
            "export", "start", *tenants, "--type", "delta", "--dest", str(lake), "--no-launch"
        )
        workers = Workers(cli, delta["etl_id"], tmp_path)
        try:
            # a partition whose followers lag (a loaded machine) has only its leader in sync,
            # and losing that leader leaves it leaderless: the kill is of a healthy cluster
            wait_for(cluster.in_sync, 180, "every partition in sync before the kill")
            voter.kill()
            stragglers = Stragglers(cluster, 1)
            wait_for(stragglers.gone, 120, "leaders moved off node 1", describe=stragglers.text)
            voter.wait(voter.start())
            wait_for(workers.all_done, 600, "every worker to finish the delta")
        finally:
            workers.stop()
        print(f"worker restarts: {workers.restarts}; capture started {capture.starts} times")
    finally:
        capture.stop()
        if not voter.status().running:
            voter.wait(voter.start())
    _assert_reconstructs_to_the_source(lake, pg)
    wait_for(cluster.in_sync, 180, "node 1 back in every ISR")


def _change_every_table(pg: PostgresSettings) -> None:
    """Updates, deletes and inserts in every table, so the delta carries every op."""
    statements = [
        "UPDATE users SET display_name = display_name || ' (moved)', updated = now() "
        "WHERE id % 3 = 0",
        "UPDATE projects SET name = name || ' v2', updated = now()",
        "UPDATE issues SET summary = summary || ' [delta]', updated = now() WHERE id % 2 = 0",
        "DELETE FROM worklogs WHERE id % 5 = 0",
        "DELETE FROM comments WHERE id % 7 = 0",
        "INSERT INTO comments (tenant_id, id, issue_id, author_id, body, created, updated) "
        "SELECT tenant_id, id + 1000000, id, NULL, 'added in the delta', now(), now() "
        "FROM issues WHERE id % 4 = 0",
    ]
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


class Stragglers:
    """Partitions still led by ``node_id``, or by no one, after it was killed."""

    def __init__(self, cluster: Cluster, node_id: int) -> None:
        self.cluster, self.node_id, self.left = cluster, node_id, ["not looked yet"]

    def gone(self) -> bool:
        """Every partition has a leader other than the node (the cluster noticed the loss)."""
        topics = admin(self.cluster.settings()).list_topics(timeout=10).topics
        self.left = [
            f"{name}[{p.id}] leader {p.leader} replicas {p.replicas} isr {p.isrs}"
            for name, t in topics.items()
            for p in t.partitions.values()
            if p.leader in (-1, self.node_id)
        ]
        return not self.left

    def text(self) -> str:
        return f"{len(self.left)} partitions, e.g. {self.left[:3]}"


def _assert_reconstructs_to_the_source(lake: Path, pg: PostgresSettings) -> None:
    for entity in ENTITIES:
        files = sorted(str(p) for p in lake.rglob(f"*/{entity}/*/part-*.parquet"))
        relation = duckdb.sql(reconstruct_sql(read_parquet_rows(files)))
        assert relation is not None
        names = relation.columns
        got = {
            (row[names.index("_tenant_id")], row[names.index("id")]): row
            for row in relation.fetchall()
        }
        for tenant in TENANTS:
            ids = {i for t, i in got if t == tenant}
            assert sorted(ids) == source_ids(pg, entity, tenant), (entity, tenant)
        truth = source_rows(pg)
        for (e, key), row in truth.items():
            if e != entity or key.split(b"/")[0].decode() not in TENANTS:
                continue
            tenant, entity_id = key.decode().split("/")
            mine = got[(tenant, int(entity_id))]
            assert {k: _normalise(mine[names.index(k)]) for k in row} == row, (entity, key)
