"""Capture meets bad sources and faults: clear refusals, reconnects, resumed snapshots."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.request import urlopen

import psycopg2
import pytest

from sluiceway.common.codec import Codec
from sluiceway.common.settings import KafkaSettings, PostgresSettings, StackSettings
from sluiceway.devstack.kafka import KafkaServer
from sluiceway.producers import checkpoint
from sluiceway.producers import main as capture
from sluiceway.producers.config import CaptureSettings, CaptureTuning
from sluiceway.producers.errors import SourceSchemaError
from tests.conftest import Cli, Stack
from tests.integration.capture_harness import CaptureProcess, settings_for_capture
from tests.integration.test_capture import (
    latest_by_key,
    read_change_topics,
    snapshot_done,
    source_rows,
    wait_caught_up,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration


def sql(pg: PostgresSettings, statement: str) -> None:
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def one_line_error(cli: Cli, slot: str) -> str:
    proc = Cli(settings_for_capture(cli.env, slot))("capture", check=False, timeout=120)
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("statement", "needle"),
    [
        (
            # with REPLICA IDENTITY FULL the row would still name its key; without either,
            # a delete would carry nothing to find the row by
            "ALTER TABLE worklogs DROP CONSTRAINT worklogs_pkey;"
            "ALTER TABLE worklogs REPLICA IDENTITY DEFAULT",
            "public.worklogs: key ['tenant_id', 'id'] is neither the primary key (none) nor "
            "covered by the replica identity (default, with no primary key)",
        ),
        ("ALTER TABLE comments DROP COLUMN body", "public.comments.body: column does not exist"),
        (
            "ALTER TABLE issues ALTER COLUMN story_points TYPE numeric",
            "public.issues.story_points: type is numeric in the database, double precision "
            "in the catalog",
        ),
    ],
)
def test_a_source_it_cannot_capture_is_refused_by_name(
    cli: Cli, source_db: PostgresSettings, unique: str, statement: str, needle: str
) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "3")
    sql(source_db, statement)
    assert needle in one_line_error(cli, f"sw_{unique}")


@pytest.mark.parametrize(
    ("created_with", "configured"),
    [("test_decoding", "pgoutput"), ("wal2json", "pgoutput"), ("pgoutput", "wal2json")],
)
def test_a_slot_with_other_settings_is_refused_by_name(
    cli: Cli, source_db: PostgresSettings, unique: str, created_with: str, configured: str
) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "3")
    slot = f"sw_{unique}"
    sql(source_db, f"SELECT pg_create_logical_replication_slot('{slot}', '{created_with}')")
    line = one_line_error(Cli({**cli.env, "SLUICEWAY_CAPTURE_PLUGIN": configured}), slot)
    assert (
        f"replication slot '{slot}' exists with plugin '{created_with}'; expected '{configured}'"
        in line
    )


def test_a_publication_lacking_captured_tables_is_refused_naming_them(
    cli: Cli, source_db: PostgresSettings, unique: str
) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "3")
    sql(source_db, "CREATE PUBLICATION sluiceway FOR TABLE projects, users, issues")
    line = one_line_error(cli, f"sw_{unique}")
    assert (
        "publication 'sluiceway' lacks captured tables public.comments, public.worklogs; "
        "run: ALTER PUBLICATION sluiceway ADD TABLE public.comments, public.worklogs" in line
    )
    sql(source_db, "ALTER PUBLICATION sluiceway ADD TABLE comments, worklogs")
    sql(source_db, "ALTER PUBLICATION sluiceway SET (publish = 'insert, update')")
    assert "publication 'sluiceway' does not publish delete" in one_line_error(cli, f"sw_{unique}")
    sql(source_db, "ALTER PUBLICATION sluiceway SET (publish = 'insert, update, delete')")
    sql(source_db, "ALTER PUBLICATION sluiceway SET TABLE projects, users, issues, comments, "
                   "worklogs WHERE (time_spent_seconds > 60)")  # fmt: skip
    line = one_line_error(cli, f"sw_{unique}")
    assert "publication 'sluiceway' filters rows or columns of public.worklogs" in line


def test_a_refused_capture_leaves_no_kafka_client_running_on_another_thread(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, unique: str
) -> None:
    # A daemon thread still inside librdkafka at interpreter shutdown can crash the process
    # (SIGSEGV instead of exit code 3): a refusal must end the indexer before it leaves.
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "3")
    sql(source_db, "CREATE PUBLICATION sluiceway FOR TABLE projects, users, issues")
    settings = CaptureSettings(kafka, source_db, CaptureTuning(slot=f"sw_{unique}"))
    for _ in range(3):
        with pytest.raises(SourceSchemaError, match=r"lacks captured tables public\.comments"):
            capture.run(settings, Codec(), lambda: False)
        assert [t.name for t in threading.enumerate() if t.name == "sw-indexer"] == []


def test_a_missing_publication_is_created_but_not_behind_an_existing_slot(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "3")
    slot = f"sw_{unique}"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
    finally:
        capture.stop()
    conn = psycopg2.connect(source_db.dsn())
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_publication_tables WHERE pubname = 'sluiceway'")
        published = sorted(r[0] for r in cur.fetchall())
    conn.close()
    assert published == ["comments", "issues", "projects", "users", "worklogs"]
    sql(source_db, "DROP PUBLICATION sluiceway")
    line = one_line_error(cli, slot)
    assert f"publication 'sluiceway' does not exist but slot '{slot}' does" in line
    assert f"pg_drop_replication_slot('{slot}')" in line


def test_a_dropped_source_connection_is_reconnected_without_loss(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "20", "--seed", "2")
    slot, port = f"sw_{unique}", 19400 + int(unique[:4], 16) % 500
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.env["SLUICEWAY_CAPTURE_METRICS_PORT"] = str(port)
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        sql(source_db, "UPDATE issues SET summary = 'before the drop', updated = now()")
        wait_caught_up(source_db, slot, capture, timeout=60)
        sql(source_db, f"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                       f"WHERE slot_name = '{slot}'")  # fmt: skip
        sql(source_db, "UPDATE issues SET summary = 'after the drop', updated = now()")
        wait_for(lambda: "reconnecting" in capture.log.read_text(), 60, "a reconnect")
        wait_caught_up(source_db, slot, capture, timeout=120)
        metrics = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        capture.stop()
    reconnects = [
        line
        for line in metrics.splitlines()
        if line.startswith("sluiceway_capture_reconnects_total")
    ]
    assert reconnects and float(reconnects[0].split()[1]) >= 1
    assert 'sluiceway_capture_events_total{entity="issue",op="u"}' in metrics
    latest = latest_by_key(read_change_topics(kafka))
    issues = [rec.event for key, rec in latest.items() if key[0] == "issue"]
    assert len(issues) == 40
    assert all(e is not None and e["after"]["summary"] == "after the drop" for e in issues)


def test_a_snapshot_killed_midway_resumes_and_ends_equal_to_the_source(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "200", "--seed", "6")
    slot = f"sw_{unique}"
    env = settings_for_capture(
        cli.env, slot, SLUICEWAY_CAPTURE_SNAPSHOT_RATE="400", SLUICEWAY_CAPTURE_CHUNK_ROWS="50"
    )
    capture = CaptureProcess(env, tmp_path / "capture.log")
    capture.start()
    try:
        # kill while the comments (the biggest table, after issues) are being read
        wait_for(lambda: "issues" in _tables_done(kafka, slot), 60, "the issues to be published")
        capture.kill()
        sql(
            source_db,
            "UPDATE comments SET body = 'changed while capture was down', updated = now()",
        )
        capture.start()
        wait_for(lambda: snapshot_done(kafka, slot), 120, "the resumed snapshot")
        wait_caught_up(source_db, slot, capture, timeout=120)
    finally:
        capture.stop()
    assert "resuming the snapshot" in capture.log.read_text()
    truth = source_rows(source_db)
    latest = latest_by_key(read_change_topics(kafka))
    assert set(latest) == set(truth)
    for key, row in truth.items():
        event = latest[key].event
        assert event is not None and event["after"] is not None
        assert event["after"]["id"] == row["id"]
        if key[0] == "comment":
            assert event["after"]["body"] == "changed while capture was down"


def _tables_done(kafka: KafkaSettings, slot: str) -> list[str]:
    state = checkpoint.load(kafka, slot)
    return [] if state is None else state.tables_done


@pytest.mark.serial  # it stops the shared broker every other test uses
def test_kafka_restarting_under_capture_loses_nothing(
    local_stack: Stack, cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings,
    tmp_path: Path, unique: str,
) -> None:  # fmt: skip
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "20", "--seed", "8")
    slot = f"sw_{unique}"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    broker = KafkaServer(StackSettings.for_dev_stack(), local_stack.kafka)
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        broker.down()
        sql(source_db, "UPDATE worklogs SET time_spent_seconds = 4242, updated = now()")
        sql(source_db, "DELETE FROM comments WHERE id % 2 = 0")
        capture.assert_alive()  # it waits for Kafka rather than failing
        broker.up()
        wait_caught_up(source_db, slot, capture, timeout=180)
    finally:
        if not broker.status().running:
            broker.up()
        capture.stop()
    truth = source_rows(source_db)
    latest = latest_by_key(read_change_topics(kafka))
    live = {k for k, rec in latest.items() if rec.event is not None and rec.event["op"] != "d"}
    assert live == set(truth)
    worklogs = [latest[k].event for k in live if k[0] == "worklog"]
    assert worklogs and all(
        e is not None and e["after"]["time_spent_seconds"] == 4242 for e in worklogs
    )
