"""Source schema changes while capture runs and churn writes: each makes a new schema
version of the entity, and a delta after each reconstructs to the source; a change that
cannot be carried stops capture of that table only.

The source database is the truth: reconstruct's output (``sluiceway reconstruct``) is
compared with it, column by column, after every change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg2
import pyarrow.parquet as pq
import pytest

from sluiceway.common.schema_registry import registered
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.catalogs import ENTITIES
from tests.conftest import Cli, Stack, fresh_database
from tests.integration.capture_harness import (
    CaptureProcess,
    read_change_topics,
    settings_for_capture,
)
from tests.integration.test_capture import (
    _normalise,
    churn,
    finish,
    snapshot_done,
    source_rows,
    wait_caught_up,
)
from tests.integration.test_delta_chain import TENANT, export
from tests.polling import wait_for

pytestmark = pytest.mark.integration

# Each while churn runs, then statements whose changes carry the new column's values.
CHANGES: list[tuple[str, list[str]]] = [
    (
        "ALTER TABLE public.comments ADD COLUMN extra integer",
        ["UPDATE public.comments SET extra = id % 1000 WHERE id % 3 = 0"],
    ),
    (
        "ALTER TABLE public.comments ALTER COLUMN extra TYPE bigint",
        ["UPDATE public.comments SET extra = 3000000000 + id WHERE id % 5 = 0"],
    ),
    ("ALTER TABLE public.comments DROP COLUMN extra", []),
]


def run_sql(pg: PostgresSettings, *statements: str) -> None:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def reconstructed(cli: Cli, lake: Path, entity: str, out: Path) -> dict[Any, dict[str, Any]]:
    target = out / f"{entity}.parquet"
    target.unlink(missing_ok=True)
    cli("reconstruct", "--dest", str(lake), "--table", entity, "--out", str(target))
    return {r["id"]: r for r in pq.read_table(target).to_pylist()}


def assert_equals_source(cli: Cli, pg: PostgresSettings, lake: Path, out: Path) -> None:
    truth = source_rows(pg)
    for entity in ENTITIES:
        expected = {
            row["id"]: row for (e, key), row in truth.items()
            if e == entity and key.startswith(f"{TENANT}/".encode())
        }  # fmt: skip
        got = reconstructed(cli, lake, entity, out)
        assert set(got) == set(expected), entity
        for entity_id, row in expected.items():
            mine = {k: _normalise(got[entity_id].get(k)) for k in row}
            assert mine == row, (entity, entity_id)


def test_add_widen_drop_during_churn_each_delta_reconstructs_to_the_source(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "20", "--seed", "31")
    slot, lake, out = f"sw_{unique}", tmp_path / "lake", tmp_path / "out"
    out.mkdir()
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        export(cli, lake, "full")
        for step, (ddl, after) in enumerate(CHANGES):
            ledger = tmp_path / f"ledger-{step}.jsonl"
            writer = churn(cli, ledger, rate=100, seconds=8, seed=40 + step)
            wait_for(lambda: ledger.exists() and ledger.stat().st_size > 0, 60, "churn")  # noqa: B023
            run_sql(source_db, ddl, *after)  # while churn writes
            finish(writer, timeout=120)
            wait_caught_up(source_db, slot, capture, timeout=120)
            delta = export(cli, lake, "delta")
            assert sum(delta["rows"].values()) > 0, ddl
            assert_equals_source(cli, source_db, lake, out)
    finally:
        capture.stop()
    versions = [s for s in registered(kafka) if s.entity == "comment"]
    extra = sorted(
        str(t) for s in versions for f in s.record["fields"] if f["name"] == "extra"
        for t in [f["type"]]
    )  # fmt: skip
    assert extra == ["['null', 'int']", "['null', 'long']"], extra
    schemas = {
        str(pq.read_schema(p).field("extra").type) if "extra" in pq.read_schema(p).names else None
        for p in lake.rglob("*/comment/*/part-*.parquet")
    }
    assert schemas == {None, "int32", "int64"}, schemas  # one schema a file, three versions


def test_a_narrowing_change_stops_only_that_tables_capture(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "5", "--seed", "32")
    slot, log = f"sw_{unique}", tmp_path / "capture.log"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), log)
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        run_sql(
            source_db,
            "ALTER TABLE public.comments ALTER COLUMN issue_id TYPE integer",
            "UPDATE public.comments SET body = 'after narrowing'",
            "UPDATE public.worklogs SET comment = 'after narrowing'",
        )
        wait_caught_up(source_db, slot, capture, timeout=120)
        capture.assert_alive()
    finally:
        capture.stop()
    events = [r.event for r in read_change_topics(kafka) if r.event is not None]
    after = [e for e in events if (e["after"] or {}).get("comment") == "after narrowing"]
    assert after and all(e["entity"] == "worklog" for e in after)
    assert not [e for e in events if (e["after"] or {}).get("body") == "after narrowing"]
    lines = [line for line in log.read_text().splitlines() if "stopped" in line]
    assert len(lines) == 1 and "public.comments.issue_id" in lines[0], lines
    assert "bigint to integer" in lines[0], lines[0]


def test_capture_restarts_after_a_catalog_column_was_dropped_and_one_widened(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str,
    local_stack: Stack,
) -> None:  # fmt: skip
    """Before, a restarted capture refused the table that no longer matched the catalog; a
    full export of rows of both versions restores, the dropped column NULL where it was."""
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "5", "--seed", "33")
    slot = f"sw_{unique}"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        run_sql(source_db, "ALTER TABLE public.users DROP COLUMN locale",
                "UPDATE public.users SET display_name = 'after drop' WHERE id % 2 = 0")  # fmt: skip
        wait_caught_up(source_db, slot, capture, timeout=120)
        capture.stop()
        capture.start()
        wait_for(lambda: "streaming from" in capture.log.read_text(), 60, "streaming")
        run_sql(
            source_db,
            "UPDATE public.users SET display_name = 'after restart' "
            "WHERE id = (SELECT min(id) FROM public.users)",
        )
        wait_caught_up(source_db, slot, capture, timeout=120)
        capture.assert_alive()
        export(cli, tmp_path / "lake", "full")
    finally:
        capture.stop()
    rows = [r.event["after"] for r in read_change_topics(kafka) if r.event and r.event["after"]]
    names = {row.get("display_name"): "locale" in row for row in rows}
    assert names.get("after drop") is False and names.get("after restart") is False, names
    with fresh_database(local_stack.pg, f"sw_restore_{unique}") as target:
        cli("restore", "--from", str(tmp_path / "lake"), "--target-dsn", target.dsn())
        restored, truth = source_rows(target), source_rows(source_db)
    users = {k: row for k, row in truth.items() if k[0] == "user"}
    assert users and {k: {c: restored[k][c] for c in row} for k, row in users.items()} == users
    assert {r["locale"] is None for k, r in restored.items() if k[0] == "user"} == {True, False}
