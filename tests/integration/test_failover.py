"""Failover on the project's own three-node SASL_SSL cluster: a full export of three
tenants with two processors and two sinks while one broker is SIGKILLed, and another once
the first is back. The lake must hold every source row of the three tenants once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluiceway.common.settings import ENTITIES, PostgresSettings
from tests.conftest import Cli, Stack, fresh_database, lake_files
from tests.integration.cluster import Cluster
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
