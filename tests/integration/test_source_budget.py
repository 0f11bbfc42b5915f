"""The source's rate budget against the real PostgreSQL and Kafka.

- queries at once: a poller on its own connection watches pg_stat_activity (the server's
  own account) while a snapshot reads five tables with four workers, its queries held
  (active, waiting on a lock the test holds) so that whatever the budget lets through piles
  up where the poller sees it: 1 with ``source_max_queries`` 1, 3 with 3 (so the poller
  would have caught a breach), and never more for the rest of the snapshot;
- rows per second: a snapshot of COPY-read tables, shared by two workers, never runs
  ahead of ``snapshot_rate``, and its chunks ask for at most one second of it.
Both snapshots must still publish every source row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import pytest

from sluiceway.common.codec import Codec
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.devstack.seed import SeedPlan, seed
from sluiceway.producers.budget import SourceBudget
from sluiceway.producers.config import CaptureSettings, CaptureTuning
from sluiceway.producers.main import capture_producer, create_change_topics
from sluiceway.producers.snapshot import SnapshotRun, _copy_types, run_snapshot
from sluiceway.producers.snapshot_workers import SNAPSHOT_APP
from sluiceway.producers.source import source_tables
from sluiceway.producers.tables import CapturedTable
from sluiceway.producers.tenant_tables import TableLister, live_tables
from tests.polling import wait_for

pytestmark = pytest.mark.integration
POLL_LIMIT_S = 120.0  # the poller gives up after this, whatever happens


@dataclass
class ActivityPoller:
    """Counts the snapshot's active queries in pg_stat_activity as fast as it can."""

    pg: PostgresSettings
    samples: int = 0
    peak: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + POLL_LIMIT_S
        with closing(psycopg2.connect(self.pg.dsn())) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                while not self.stop.is_set() and time.monotonic() < deadline:
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                        "AND datname = %s AND state = 'active'",
                        (SNAPSHOT_APP, self.pg.dbname),
                    )
                    self.peak = max(self.peak, cur.fetchone()[0])
                    self.samples += 1


@contextmanager
def polling(pg: PostgresSettings) -> Iterator[ActivityPoller]:
    poller = ActivityPoller(pg)
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    try:
        yield poller
    finally:
        poller.stop.set()
        thread.join(POLL_LIMIT_S)


@pytest.fixture
def seeded(source_db: PostgresSettings) -> tuple[PostgresSettings, dict[str, int]]:
    counts = seed(source_db, SeedPlan(4, 600, 11), Codec())
    return source_db, counts


def _snapshot(
    kafka: KafkaSettings, pg: PostgresSettings, tables: TableLister = live_tables, **tuning: Any
) -> SnapshotRun:
    settings = CaptureSettings(kafka, pg, CaptureTuning(**tuning))
    create_change_topics(settings)
    run = SnapshotRun(settings, Codec(), capture_producer(settings), None, None)
    run_snapshot(run, None, tables)
    return run


@dataclass
class SnapshotThread:
    """A snapshot run in a thread, so the test can hold a lock and watch meanwhile."""

    kafka: KafkaSettings
    pg: PostgresSettings
    tuning: dict[str, Any]
    run: SnapshotRun | None = None
    error: BaseException | None = None

    def __call__(self) -> None:
        try:
            self.run = _snapshot(self.kafka, self.pg, **self.tuning)
        except BaseException as exc:  # re-raised by the test
            self.error = exc


def _backends(pg: PostgresSettings) -> int:
    with closing(psycopg2.connect(pg.dsn())) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            (SNAPSHOT_APP, pg.dbname),
        )
        found: int = cur.fetchone()[0]
    return found


def _snapshot_behind_a_lock(
    kafka: KafkaSettings, pg: PostgresSettings, limit: int, workers: int
) -> tuple[SnapshotRun, ActivityPoller]:
    """While the test holds every table's ACCESS EXCLUSIVE lock, each snapshot query that
    starts waits on it, active, in pg_stat_activity: the queries the budget let through
    pile up there. Once every worker is connected (and so past its snapshot import) and the
    pile has had time to form, the lock goes and the snapshot runs to its end."""
    tables = ", ".join(source_tables().values())  # names from our own schema
    job = SnapshotThread(kafka, pg, {"chunk_rows": 150, "snapshot_workers": workers,
                                     "source_max_queries": limit})  # fmt: skip
    thread = threading.Thread(target=job, daemon=True)
    with closing(psycopg2.connect(pg.dsn())) as locker, polling(pg) as poller:
        with locker.cursor() as cur:
            cur.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
        thread.start()
        wait_for(lambda: _backends(pg) == workers + 1, 60, f"{workers} workers", poll=0.05)
        wait_for(lambda: poller.peak >= limit, 60, f"{limit} queries waiting", poll=0.05)
        seen = poller.samples
        wait_for(lambda: poller.samples > seen + 200, 60, "200 more samples", poll=0.05)
        locker.rollback()
        thread.join(POLL_LIMIT_S)
    if job.error is not None:
        raise job.error
    assert job.run is not None, "the snapshot did not finish"
    return job.run, poller


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrent_snapshot_queries_stay_within_the_limit(
    kafka: KafkaSettings, seeded: tuple[PostgresSettings, dict[str, int]], limit: int
) -> None:
    """Four workers; at most ``limit`` of their queries on the server at any time. With 3
    allowed the poller sees 3: it would have seen a breach of 1."""
    pg, counts = seeded
    run, poller = _snapshot_behind_a_lock(kafka, pg, limit, workers=4)
    assert poller.peak == limit, f"{poller.peak} snapshot queries at once, limit {limit}"
    assert run.budget.peak == limit
    assert run.counts == counts  # every source row published


def _workers_heard(pg: PostgresSettings) -> int:
    """Snapshot connections that have sent the server a statement (the server keeps each
    backend's last one; a connection that sent none has an empty ``query``)."""
    with closing(psycopg2.connect(pg.dsn())) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = %s AND query <> ''",
            (SNAPSHOT_APP, pg.dbname),
        )
        found: int = cur.fetchone()[0]
    return found


def test_a_worker_sends_nothing_before_it_holds_a_query_slot(
    kafka: KafkaSettings, seeded: tuple[PostgresSettings, dict[str, int]]
) -> None:
    """The limit counts every statement of the workers, their snapshot import and rollback
    too (a CI run saw an import beside a read with a limit of 1). The test holds the only
    slot: the four workers connect, and none may send anything until it lets go."""
    pg, counts = seeded
    budget, workers = SourceBudget(0, 1), 4
    settings = CaptureSettings(kafka, pg, CaptureTuning(chunk_rows=150, snapshot_workers=workers))
    create_change_topics(settings)
    run = SnapshotRun(settings, Codec(), capture_producer(settings), None, None,
                      shared_budget=budget)  # fmt: skip
    job = threading.Thread(target=run_snapshot, args=(run, None), daemon=True)
    with budget.statement():
        job.start()
        wait_for(lambda: _backends(pg) == workers + 1, 60, f"{workers} workers", poll=0.05)
        # a worker sends its import as soon as it is connected: 100 looks would see it
        heard = [_workers_heard(pg) for _ in range(100)]
        assert set(heard) == {1}, f"statements from {max(heard) - 1} workers without a slot"
    job.join(POLL_LIMIT_S)
    assert not job.is_alive(), "the snapshot did not finish"
    assert run.counts == counts


def _copy_tables(cur: Any, catalog: Any) -> list[CapturedTable]:
    return [t for t in live_tables(cur, catalog) if t.entity in ("issue", "comment")]


def test_the_rows_per_second_budget_holds_on_the_copy_path(
    kafka: KafkaSettings, seeded: tuple[PostgresSettings, dict[str, int]]
) -> None:
    pg, counts = seeded
    rate = 2_000.0
    tuning = CaptureTuning(snapshot_rate=rate, snapshot_workers=2)
    settings = CaptureSettings(kafka, pg, tuning)
    create_change_topics(settings)
    started, published = time.monotonic(), []
    run = SnapshotRun(
        settings, Codec(), capture_producer(settings), None, None,
        lambda _entity, n: published.append((time.monotonic() - started, n)),
    )  # fmt: skip
    with closing(psycopg2.connect(pg.dsn())) as conn, conn.cursor() as cur:
        tables = _copy_tables(cur, run.codec.catalog)
    assert len(tables) == 2 and all(_copy_types(run, t) is not None for t in tables)
    run_snapshot(run, None, _copy_tables)
    elapsed = time.monotonic() - started
    total = counts["issue"] + counts["comment"]
    assert sum(n for _, n in published) == total <= run.budget.reserved
    assert max(n for _, n in published) <= rate  # no query asks for more than a second's worth
    done = 0
    for at, n in published:  # a chunk is published after it was read: reads ran at least this far
        done += n
        assert done <= rate * at + 2 * rate, (at, done)  # two workers: one read each ahead
    assert elapsed >= (total - 2 * rate) / rate
