"""Change capture against the real PostgreSQL and Kafka: snapshot handoff and crash safety.

The source database and the churn ledger are the truth; the change topics are read back.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

from sluiceway.common.catalog import Catalog
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.producers import checkpoint
from sluiceway.producers.events import SEQ_BITS, lsn_to_int
from sluiceway.producers.source import source_tables
from tests.catalogs import ENTITIES
from tests.conftest import Cli, settings_env
from tests.integration.capture_harness import (
    CaptureProcess,
    Record,
    change_topic_ends,
    read_change_topics,
    settings_for_capture,
    slot_caught_up,
    wal_lsn,
)
from tests.integration.helpdesk_truth import (
    event_cells,
    full_identity,
    kafka_key,
    source_state,
    write_catalog,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration
PLUGINS = ("pgoutput", "wal2json")


@pytest.fixture(params=PLUGINS)
def plugin(request: pytest.FixtureRequest) -> str:
    """Every capture test here runs with each output plugin capture can decode."""
    name: str = request.param
    return name


def _normalise(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()  # aware datetimes from psycopg2 and fastavro compare by instant
    if isinstance(value, date):
        return value.isoformat()
    return value


def source_rows(pg: PostgresSettings) -> dict[tuple[str, bytes], dict[str, Any]]:
    rows: dict[tuple[str, bytes], dict[str, Any]] = {}
    with psycopg2.connect(pg.dsn()) as conn:
        cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        for entity in ENTITIES:
            cur.execute(f"SELECT * FROM {source_tables()[entity]}")
            for row in cur.fetchall():
                tenant = row.pop("tenant_id")
                key = f"{tenant}/{row['id']}".encode()
                rows[(entity, key)] = {k: _normalise(v) for k, v in row.items()}
    conn.close()
    return rows


def latest_by_key(records: list[Record]) -> dict[tuple[str, bytes], Record]:
    latest: dict[tuple[str, bytes], Record] = {}
    previous: dict[tuple[str, bytes], Record] = {}
    for rec in records:  # offset order within a partition, and a key lives in one partition
        entity = rec.topic.rsplit(".", 1)[1]
        key = (entity, rec.key)
        if rec.event is None:
            before = latest.get(key)
            assert before is not None and before.event is not None and before.event["op"] == "d", (
                f"tombstone of {key} not preceded by a delete"
            )
        else:
            previous[key] = rec
        latest[key] = rec
    return {k: previous[k] for k in latest}


def start_capture(cli: Cli, tmp_path: Path, slot: str, **extra: str) -> CaptureProcess:
    capture = CaptureProcess(settings_for_capture(cli.env, slot, **extra), tmp_path / "capture.log")
    capture.start()
    return capture


def churn(
    cli: Cli, ledger: Path, rate: int, seconds: int, seed: int, *extra: str
) -> subprocess.Popen[str]:
    args = ["source", "churn", "--rate", str(rate), "--seconds", str(seconds),
            "--seed", str(seed), "--ledger", str(ledger), "--json", *extra]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "sluiceway.cli", *args], env=cli.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{err}\n{out}"
    summary: dict[str, Any] = json.loads(out)
    return summary


def wait_caught_up(pg: PostgresSettings, slot: str, capture: CaptureProcess, timeout: float) -> str:
    """Wait until capture confirmed every transaction committed so far; returns the LSN
    it waited for."""
    target = wal_lsn(pg)

    def caught_up() -> bool:
        capture.assert_alive()
        return slot_caught_up(pg, slot, target)

    wait_for(caught_up, timeout, f"slot {slot} to confirm {target}")
    return target


def consistent_point_reached(kafka: KafkaSettings, slot: str) -> bool:
    """Capture saves its checkpoint once the slot it created has its consistent point."""
    return checkpoint.load(kafka, slot) is not None


def test_snapshot_with_concurrent_writes_ends_equal_to_the_source(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str,
    plugin: str,
) -> None:  # fmt: skip
    cli("source", "seed", "--tenants", "3", "--issues-per-tenant", "150", "--seed", "3")
    slot = f"sw_{unique}"
    # A slow, chunked snapshot so the writes below land while it is being read.
    capture = start_capture(
        cli,
        tmp_path,
        slot,
        SLUICEWAY_CAPTURE_SNAPSHOT_RATE="1500",
        SLUICEWAY_CAPTURE_CHUNK_ROWS="100",
        SLUICEWAY_CAPTURE_PLUGIN=plugin,
    )
    try:
        # Writes before the slot's consistent point all reach the topics as snapshot rows. The
        # slot is listed before it has that point: PostgreSQL waits for the transactions
        # running then (other databases' too) to end, up to its next xl_running_xacts record
        # (15 s apart) on a busy cluster. Start the writes once capture has the point.
        wait_for(lambda: consistent_point_reached(kafka, slot), 120, f"slot {slot}'s point")
        writer = churn(cli, tmp_path / "ledger.jsonl", rate=400, seconds=4, seed=9)
        summary = finish(writer, timeout=120)
        assert summary["changes"] > 0
        wait_caught_up(source_db, slot, capture, timeout=180)
    finally:
        capture.stop()
    truth = source_rows(source_db)
    latest = latest_by_key(read_change_topics(kafka))
    for key, row in truth.items():
        rec = latest.get(key)
        assert rec is not None and rec.event is not None, f"{key} missing from the topics"
        assert rec.event["op"] != "d", f"{key} exists in the source but was last deleted"
        got = {k: _normalise(v) for k, v in rec.event["after"].items()}
        assert got == row, key
    deleted = [k for k, rec in latest.items() if k not in truth]
    for key in deleted:
        event = latest[key].event
        assert event is not None and event["op"] == "d", f"{key} gone from the source, not deleted"
    ops = {rec.event["op"] for rec in latest.values() if rec.event}
    assert {"r", "u"} <= ops  # both snapshot rows and streamed updates were checked


def snapshot_done(kafka: KafkaSettings, slot: str) -> bool:
    state = checkpoint.load(kafka, slot)
    return state is not None and state.snapshot_done


def jira_ledger_key(entry: dict[str, Any]) -> tuple[str, bytes]:
    return entry["entity"], f"{entry['tenant_id']}/{entry['id']}".encode()


def ledger_ops(
    path: Path, key_of: Callable[[dict[str, Any]], tuple[str, bytes]] = jira_ledger_key
) -> dict[tuple[str, bytes], list[str]]:
    """Per (entity, Kafka key), the ops the churn ledger at ``path`` committed, in order."""
    ops: dict[tuple[str, bytes], list[str]] = defaultdict(list)
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        ops[key_of(entry)].append(entry["op"])
    return ops


def streamed_ops(records: list[Record]) -> tuple[dict[tuple[str, bytes], list[str]], int]:
    """Per key, the ops after dropping repeated positions; checks commit order per partition."""
    seen: set[int] = set()
    last: dict[tuple[str, int], int] = {}
    ops: dict[tuple[str, bytes], list[str]] = defaultdict(list)
    repeats = 0
    for rec in records:
        if rec.event is None:
            continue
        pos = rec.event["position"]
        if pos in seen:
            repeats += 1
            continue
        seen.add(pos)
        tp = (rec.topic, rec.partition)
        assert pos > last.get(tp, -1), f"{tp} out of commit order at offset {rec.offset}"
        last[tp] = pos
        if rec.event["op"] != "r":
            ops[(rec.topic.rsplit(".", 1)[1], rec.key)].append(rec.event["op"])
    return ops, repeats


@dataclass(frozen=True)
class ChurnShape:
    """A catalog's source for the crash test: seeded, churned, and read back as the truth."""

    cli: Cli
    catalog: Catalog | None  # None: the active one (the Jira demo)
    rate: int
    seconds: int
    ledger_key: Callable[[dict[str, Any]], tuple[str, bytes]]
    truth: Callable[[], dict[tuple[str, bytes], dict[str, Any]]]
    """(entity, Kafka key) -> every live row of the source, as its events' ``after``."""
    after: Callable[[dict[str, Any]], dict[str, Any]]
    churn_args: tuple[str, ...] = ()


def jira_shape(cli: Cli, pg: PostgresSettings) -> ChurnShape:
    cli("source", "seed", "--tenants", "3", "--issues-per-tenant", "60", "--seed", "4")
    return ChurnShape(
        cli, None, rate=2000, seconds=60, ledger_key=jira_ledger_key,
        truth=lambda: source_rows(pg),
        after=lambda after: {k: _normalise(v) for k, v in after.items()},
    )  # fmt: skip


def helpdesk_shape(
    kafka: KafkaSettings, pg: PostgresSettings, tmp_path: Path, plugin: str
) -> ChurnShape:
    """uuid keys, a composite key, tenant columns outside the key, a self-reference: smaller
    and slower than the Jira demo (its rows are wider), to stay within about two minutes."""
    path = tmp_path / "catalog.yaml"
    catalog = write_catalog(path)
    cli = Cli(settings_env(kafka, pg, {"SLUICEWAY_PG_CATALOG": str(path)}))
    cli("source", "seed", "--catalog", str(path), "--tenants", "2",
        "--rows-per-tenant", "40", "--seed", "4")  # fmt: skip
    full_identity(pg)

    def ledger_key(entry: dict[str, Any]) -> tuple[str, bytes]:
        entity = entry["entity"]
        return entity, kafka_key(catalog, entity, entry["tenant_id"], entry["id"])

    return ChurnShape(
        cli, catalog, rate=1000, seconds=30, ledger_key=ledger_key,
        truth=lambda: source_state(pg, catalog, plugin),
        after=event_cells,
        churn_args=("--catalog", str(path)),
    )  # fmt: skip


def assert_latest_is_the_source(shape: ChurnShape, records: list[Record]) -> None:
    """Every live source row is its key's last event on the topics; every other key's last
    event is a delete."""
    truth = shape.truth()
    latest = latest_by_key(records)
    for key, row in truth.items():
        rec = latest.get(key)
        assert rec is not None and rec.event is not None, f"{key} missing from the topics"
        assert rec.event["op"] != "d", f"{key} exists in the source but was last deleted"
        assert shape.after(rec.event["after"]) == row, key
    for key in latest.keys() - truth.keys():
        event = latest[key].event
        assert event is not None and event["op"] == "d", f"{key} gone from the source, not deleted"


@pytest.mark.parametrize("catalog", ["jira", "helpdesk"])
def test_churn_with_capture_killed_three_times_loses_and_doubles_nothing(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str,
    plugin: str, catalog: str,
) -> None:  # fmt: skip
    shape = jira_shape(cli, source_db) if catalog == "jira" else (
        helpdesk_shape(kafka, source_db, tmp_path, plugin))  # fmt: skip
    slot = f"sw_{unique}"
    capture = start_capture(shape.cli, tmp_path, slot, SLUICEWAY_CAPTURE_PLUGIN=plugin)
    # Changes committed before the slot's consistent point reach the topics as snapshot
    # rows, not as the ledger's ops: churn starts once the snapshot is published.
    wait_for(lambda: snapshot_done(kafka, slot), 120, "the initial snapshot")
    ledger = tmp_path / "ledger.jsonl"
    rng = random.Random(unique)
    kills = sorted(rng.uniform(5, shape.seconds - 5) for _ in range(3))
    try:
        started = time.monotonic()
        writer = churn(shape.cli, ledger, shape.rate, shape.seconds, rng.randrange(1000),
                       *shape.churn_args)  # fmt: skip
        for at in kills:
            wait_for(lambda at=at: time.monotonic() - started >= at, 70, f"kill at {at:.1f}s")
            capture.kill()
            capture.start()
        summary = finish(writer, timeout=180)
        assert summary["changes"] >= shape.rate * shape.seconds * 5 // 6  # the rate was kept
        wait_caught_up(source_db, slot, capture, timeout=300)
    finally:
        capture.stop()
    assert capture.starts == 4
    records = read_change_topics(kafka, timeout=120, catalog=shape.catalog)
    assert_ledger_streamed_once(ledger_ops(ledger, shape.ledger_key), records)
    assert_latest_is_the_source(shape, records)


def assert_ledger_streamed_once(
    expected: dict[tuple[str, bytes], list[str]], records: list[Record]
) -> None:
    """The topics hold every ledgered change once per position, and nothing else."""
    got, repeats = streamed_ops(records)
    missing = [k for k in expected if got.get(k) != expected[k]]
    if missing:
        key = missing[0]
        raise AssertionError(
            f"{len(missing)} keys differ, e.g. {key}: {expected[key]} vs {got.get(key)}"
        )
    assert set(got) <= set(expected)  # nothing that churn did not commit
    assert sum(len(v) for v in got.values()) == sum(len(v) for v in expected.values())
    print(f"re-sent events dropped by position: {repeats}")


def test_caught_up_waits_past_the_last_commit(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str,
    plugin: str,
) -> None:  # fmt: skip
    """What the export tests rely on before they take a run's cut: once ``wait_caught_up``
    returns, every transaction committed before it is on the change topics. So the position
    it waits for must lie past the commit record of the last such transaction (the events'
    positions carry their commit's LSN): a position at or before it can be confirmed while
    capture is still handing the transaction to Kafka, because the replication client moves
    its confirmed position up to the server's WAL end on a keepalive."""
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "300", "--seed", "5")
    slot = f"sw_{unique}"
    capture = start_capture(cli, tmp_path, slot, SLUICEWAY_CAPTURE_PLUGIN=plugin)
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 120, "the initial snapshot")
        before = change_topic_ends(kafka, ("issue",))["issue"]
        with psycopg2.connect(source_db.dsn()) as conn, conn.cursor() as cur:
            cur.execute(f"UPDATE {source_tables()['issue']} SET summary = summary || ' (again)'")
            updated = cur.rowcount
        conn.close()
        target = wait_caught_up(source_db, slot, capture, timeout=120)
        assert change_topic_ends(kafka, ("issue",))["issue"] - before == updated  # at once
    finally:
        capture.stop()
    commits = [r.event["position"] >> SEQ_BITS for r in read_change_topics(kafka) if r.event]
    assert max(commits) < lsn_to_int(target), "the wait ends at or before the last commit"
