"""The scale-out scenario of test_scale_out.py on the help desk example catalog.

uuid keys (customers, tickets), a composite key (replies: ``ticket_id, n`` after the
tenant), a bigint key with the tenant column outside it (attachments), a self-reference
(replies answer replies). Two processors and two sinks at a time share a full export and
then a delta while test_scale_out.replace_workers stops, kills and replaces them at its
five points. The delta follows one transaction that updates every ticket and deletes every
tenth leaf reply (replies keep the default replica identity: their deletes carry only the
key, the tenant inside it; the tables whose tenant column is outside the key get REPLICA
IDENTITY FULL). The source, read with SQL, is the truth: the full run holds every row of
the run's tenants once by (tenant, full record key); the delta holds exactly the changed
keys once (tickets as rows, replies as deletes) and nothing else; full + delta reconstruct
to the source's keys, and the updated column cell for cell.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from sluiceway.common.catalog import Catalog
from sluiceway.common.entities import set_active_catalog
from sluiceway.common.partitioning import tenant_partitions
from sluiceway.common.pgtypes import column_type
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli, settings_env
from tests.integration.capture_harness import (
    CaptureProcess,
    change_topic_ends,
    settings_for_capture,
)
from tests.integration.helpdesk_truth import (
    full_identity,
    source_rows,
    typed_keys,
    write_catalog,
)
from tests.integration.test_capture import snapshot_done, wait_caught_up
from tests.integration.test_scale_out import DELTA_ENV as SCALE_OUT_DELTA_ENV
from tests.integration.test_scale_out import WORKER_ENV as SCALE_OUT_ENV
from tests.integration.test_scale_out import (
    Key,
    announce,
    check_delta,
    check_full,
    manifest_files,
    reconstructed,
    run_with_replacements,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration
SEEDED = 10  # tenants "1" to "10"
# The runs' tenants by partition: 7, 9, 10 | 2, 3, 4 (5 and 6 there too, left out) | 1, 8.
# Each partition holds a fair share, so whichever partitions a sink is given, it has files
# to publish while the test waits for one. 4 entities x 10 tenants: 140,000 events
# captured, 112,000 of them the runs', a delta of 3 x 28,000 ticket updates (the help desk rows
# are wider than the Jira demo's: this takes about as long as its test).
TENANTS = ("1", "2", "3", "4", "7", "8", "9", "10")
ROWS_PER_TENANT = 3_500
# Smaller files than the Jira test's WORKER_ENV: 4,000 rows per entity and partition would
# rotate once at 4,000 rows a file, and a sink could publish its last file before the
# test's move waits for its next one.
SMALLER_FILES = {"SLUICEWAY_SINK_MAX_ROWS": "1000", "SLUICEWAY_SINK_ROW_GROUP_ROWS": "250"}
# Smaller chunks too: at 2,000 offsets a chunk the full run ended a second after move 3,
# before a processor with work was left to kill.
WORKER_ENV = {**SCALE_OUT_ENV, **SMALLER_FILES, "SLUICEWAY_PROCESSOR_FULL_CHUNK": "500"}
DELTA_ENV = {**SCALE_OUT_DELTA_ENV, **SMALLER_FILES}
# Each ticket is edited three times before the delta, in three transactions: the delta
# holds its three versions in order (the reconstruction must take the last).
EDITS = 3
CHANGED = ("ticket", "reply")  # every ticket updated, every tenth leaf reply deleted
# leaf replies only: nothing answers them and nothing is attached to them (foreign keys)
DELETE_REPLIES = """
DELETE FROM public.replies r WHERE n % 10 = 0
  AND NOT EXISTS (SELECT 1 FROM public.replies c
                  WHERE c.org_id = r.org_id AND c.ticket_id = r.ticket_id AND c.parent_n = r.n)
  AND NOT EXISTS (SELECT 1 FROM public.attachments a
                  WHERE a.org_id = r.org_id AND a.ticket_id = r.ticket_id AND a.reply_n = r.n)
"""


@pytest.fixture
def helpdesk(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Cli, Catalog]]:  # fmt: skip
    """A CLI on the help desk catalog, made this process's catalog too: announce and the
    run's progress read it here."""
    path = tmp_path / "catalog.yaml"
    catalog = write_catalog(path)
    monkeypatch.setenv("SLUICEWAY_PG_CATALOG", str(path))
    set_active_catalog(None)  # read again from the setting
    try:
        yield Cli(settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(path)})), catalog
    finally:
        monkeypatch.undo()
        set_active_catalog(None)  # back to what the environment names


def update_everything(pg: PostgresSettings) -> tuple[int, int]:
    """Every ticket's subject edited in each of EDITS transactions, then every tenth leaf
    reply deleted in one more. Returns (tickets updated by each edit, replies deleted)."""
    conn = psycopg2.connect(pg.dsn())
    try:
        for _ in range(EDITS):
            with conn, conn.cursor() as cur:  # one transaction each
                # left(): the subject stays within its character varying(200)
                cur.execute("UPDATE public.tickets SET subject = left(subject, 150) || "
                            "' (edited)', updated_at = clock_timestamp()")  # fmt: skip
                updated = cur.rowcount
        with conn, conn.cursor() as cur:
            cur.execute(DELETE_REPLIES)
            deleted = cur.rowcount
    finally:
        conn.close()
    return int(updated), int(deleted)


def source_column(pg: PostgresSettings, catalog: Catalog, entity: str, column: str) -> dict[
    Key, Any
]:  # fmt: skip
    """(tenant, *typed record key) -> the column's value, parsed, for the runs' tenants."""
    found = catalog.entity(entity)
    keys = [column_type(found.column(c), catalog.types) for c in found.record_key]
    kind = column_type(found.column(column), catalog.types)
    return {
        (tenant, *(k.parse_text(t) for k, t in zip(keys, key, strict=True))): kind.parse_text(
            row[column]
        )
        for (tenant, *key), row in source_rows(pg, catalog, entity).items()
        if tenant in TENANTS
    }


def test_workers_replaced_throughout_a_helpdesk_full_export_and_its_delta(
    helpdesk: tuple[Cli, Catalog], kafka: KafkaSettings, source_db: PostgresSettings,
    tmp_path: Path, unique: str,
) -> None:  # fmt: skip
    cli, catalog = helpdesk
    keys = {e: catalog.entity(e).record_key for e in catalog.names}
    assert keys["reply"] == ("ticket_id", "n"), keys  # the composite key, tenant left out
    partitions = [tenant_partitions(t, kafka.partitions, kafka.spread_of(t)) for t in TENANTS]
    assert set().union(*partitions) == set(range(kafka.partitions)), partitions
    cli("source", "seed", "--catalog", str(tmp_path / "catalog.yaml"), "--tenants", str(SEEDED),
        "--rows-per-tenant", str(ROWS_PER_TENANT), "--seed", "7", timeout=600)  # fmt: skip
    full_identity(source_db)  # deletes of tables keyed without the tenant carry it
    slot, lake = f"sw_{unique}", tmp_path / "lake"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 300, "the initial snapshot")
        full = announce(kafka, lake, "full", TENANTS)
        run_with_replacements(cli, kafka, full, lake, tmp_path, WORKER_ENV)
        before = typed_keys(source_db, catalog, TENANTS)
        check_full(lake, full, before, keys)

        ends = change_topic_ends(kafka, CHANGED)
        updated, deleted = update_everything(source_db)
        assert updated == SEEDED * ROWS_PER_TENANT and deleted > 0
        wait_caught_up(source_db, slot, capture, timeout=300)
        # the delta's cut is taken now: the whole transaction must be on the change topics
        grown = {e: n - ends[e] for e, n in change_topic_ends(kafka, CHANGED).items()}
        # a delete and its tombstone
        assert grown == {"ticket": EDITS * updated, "reply": 2 * deleted}
        delta = announce(kafka, lake, "delta", TENANTS)
        run_with_replacements(cli, kafka, delta, lake, tmp_path, DELTA_ENV)
    finally:
        capture.stop()
    after = typed_keys(source_db, catalog, TENANTS)
    assert before["reply"] - after["reply"], "no reply of the runs' tenants was deleted"
    check_delta(lake, delta, before, after, CHANGED, keys, versions=EDITS)
    for entity in catalog.names:
        assert set(reconstructed(lake, entity, keys[entity][0], keys[entity])) == after[entity]
    subjects = reconstructed(lake, "ticket", "subject", keys["ticket"])
    assert subjects == source_column(source_db, catalog, "ticket", "subject")
    assert all(str(s).endswith(" (edited)") for s in subjects.values())
    files = {r.type: sum(map(len, manifest_files(lake, r.etl_id).values())) for r in (full, delta)}
    print(f"\nhelpdesk scale-out: {updated} tickets updated, {deleted} replies deleted "
          f"(all tenants); files per run {files}")  # fmt: skip
