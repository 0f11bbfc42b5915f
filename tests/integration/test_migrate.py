"""Migrate tenant A into tenant B of a fresh database while A keeps serving writes.

The migrate worker is SIGKILLed once midway and restarted; after cutover, the target's
tenant B must equal the source's tenant A, table by table and column by column, modulo
the id map (id + offset, every reference too). The source database is the truth.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.control import registry
from tests.catalogs import ENTITIES
from tests.conftest import Cli, Stack, fresh_database
from tests.integration.test_capture import (
    churn,
    finish,
    snapshot_done,
    source_rows,
    start_capture,
    wait_caught_up,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration
A, B, OFFSET = "tenant-001", "tenant-042", 1_000_000
# Written out here, not imported, so the product's own reference map is checked too.
ID_COLUMNS = {
    "project": ("id", "lead_id"),
    "user": ("id",),
    "issue": ("id", "project_id", "creator_id", "reporter_id", "assignee_id", "parent_id"),
    "comment": ("id", "issue_id", "author_id", "update_author_id"),
    "worklog": ("id", "issue_id", "author_id", "update_author_id"),
}


def _expected(source: dict[tuple[str, bytes], dict[str, Any]]) -> dict[tuple[str, bytes], Any]:
    out = {}
    for (entity, key), row in source.items():
        if not key.startswith(f"{A}/".encode()):
            continue
        moved = {c: (v + OFFSET if c in ID_COLUMNS[entity] and v is not None else v)
                 for c, v in row.items()}  # fmt: skip
        out[(entity, f"{B}/{moved['id']}".encode())] = moved
    return out


def _state(target: PostgresSettings) -> dict[str, Any] | None:
    with closing(psycopg2.connect(target.dsn())) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('sluiceway_migration')")
        if cur.fetchone()[0] is None:
            return None
        cur.execute("SELECT status, last_etl_id, runs_applied FROM sluiceway_migration")
        row = cur.fetchone()
    return {"status": row[0], "last_etl_id": row[1], "runs": row[2]} if row else None


def _runs(target: PostgresSettings) -> int:
    state = _state(target)
    return state["runs"] if state else 0


def _worker(cli: Cli, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sluiceway.cli", "migrate", "start", *args],
        env=cli.env, stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _alive(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is not None:
        raise AssertionError(f"migrate exited {proc.returncode}:\n{log.read_text()[-3000:]}")


def test_migrate_under_churn_with_a_killed_worker_equals_the_source(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, local_stack: Stack,
    tmp_path: Path, unique: str,
) -> None:  # fmt: skip
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "50", "--seed", "31")
    slot = f"sw_{unique}"
    capture = start_capture(cli, tmp_path, slot)
    log, lake = tmp_path / "migrate.log", tmp_path / "lake"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        with fresh_database(local_stack.pg, f"sw_migrate_{unique}") as target:
            args = ["--from-tenant", A, "--to-tenant", B, "--target-dsn", target.dsn(),
                    "--id-offset", str(OFFSET), "--interval", "1",
                    "--dest", str(lake)]  # fmt: skip
            writer = churn(cli, tmp_path / "ledger.jsonl", rate=40, seconds=40, seed=8)
            proc = _worker(cli, args, log)
            workers.append(proc)

            def runs_at_least(n: int) -> bool:
                _alive(proc, log)
                return _runs(target) >= n

            wait_for(lambda: runs_at_least(2), 90, "the full copy and a first delta")

            def delta_in_flight() -> str | None:
                _alive(proc, log)
                busy = registry.active_at(kafka, local_stack.s3, str(lake))
                return busy.run.etl_id if busy else None

            # killed while its delta run is going: the restart must let that run finish,
            # apply it exactly once and continue the chain after it
            in_flight = wait_for(delta_in_flight, 60, "a delta run of the migration")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_at = _runs(target)
            proc = _worker(cli, args, log)
            workers.append(proc)
            wait_for(lambda: runs_at_least(killed_at + 1), 90, "a delta after the restart")
            running = cli.json("migrate", "status", "--target-dsn", target.dsn())
            assert running["status"] == "running" and running["lag_seconds"] >= 0
            assert running["runs_pending"] >= 0 and running["rows"]["issue"] > 0
            wait_for(lambda: runs_at_least(killed_at + 2), 90, "two deltas after the restart")
            assert finish(writer, 90)["changes"] > 100
            wait_caught_up(source_db, slot, capture, timeout=60)

            done = cli.json("migrate", "cutover", "--target-dsn", target.dsn(), "--timeout", "90")
            assert done["status"] == "cut_over"
            assert proc.wait(30) == 0, log.read_text()[-3000:]
            status = cli.json("migrate", "status", "--target-dsn", target.dsn())
            assert status["status"] == "cut_over" and status["runs_applied"] >= killed_at + 3

            text = log.read_text()
            assert f"resuming tenant-001-to-{B}" in text, text
            assert f"waiting for run {in_flight}" in text or f"run {in_flight} is complete" in text
            # every complete run of the chain applied, each exactly once
            runs = (lake / "_runs").glob("*.json")
            complete = sorted(p.stem for p in runs if not p.name.startswith("."))
            assert in_flight in complete
            assert status["runs_applied"] == len(complete)
            assert status["last_etl_id"] == complete[-1]

            report = cli.json("migrate", "verify", "--target-dsn", target.dsn())
            assert report["total_differences"] == 0, report["differences"]
            # the independent check: every table, every column, modulo the id map
            truth = _expected(source_rows(source_db))
            got = source_rows(target)
            for entity in ENTITIES:
                want = {k: v for (e, k), v in truth.items() if e == entity}
                have = {k: v for (e, k), v in got.items() if e == entity}
                assert have.keys() == want.keys(), entity
                assert have == want, entity
                assert report["tables"][entity]["target_rows"] == len(want)
            assert sum(1 for e, k in got if k.startswith(f"{A}/".encode())) == 0
            _tampered(cli, target)
            _bad_inputs(cli, target, source_db, local_stack, unique)
    finally:
        for worker in workers:  # a failed assertion must not leave a worker behind
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
        capture.stop()


def _tampered(cli: Cli, target: PostgresSettings) -> None:
    """verify names every difference by key and exits 6."""
    with closing(psycopg2.connect(target.dsn())) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT min(id) FROM issues WHERE tenant_id = %s", (B,))
        issue = cur.fetchone()[0]
        cur.execute("UPDATE issues SET summary = 'tampered' WHERE tenant_id = %s AND id = %s",
                    (B, issue))  # fmt: skip
        cur.execute("SELECT min(id) FROM comments WHERE tenant_id = %s", (B,))
        comment = cur.fetchone()[0]
        cur.execute("DELETE FROM comments WHERE tenant_id = %s AND id = %s", (B, comment))
    proc = cli("migrate", "verify", "--target-dsn", target.dsn(), "--json", check=False)
    assert proc.returncode == 6, proc.stderr
    report = json.loads(proc.stdout)
    assert report["total_differences"] == 2
    assert report["differences"] == [  # in dependency order of the tables, then by id
        {"table": "issue", "id": issue, "kind": "changed", "columns": ["summary"]},
        {"table": "comment", "id": comment, "kind": "missing", "columns": []},
    ]
    assert (
        report["tables"]["issue"]["source_checksum"] != report["tables"]["issue"]["target_checksum"]
    )
    again = cli("migrate", "resume", "--target-dsn", target.dsn(), check=False)
    assert again.returncode == 3 and "already cut over" in again.stderr, again.stderr


def _one_line_error(cli: Cli, args: list[str], says: str) -> None:
    proc = cli("migrate", "start", *args, check=False)
    assert proc.returncode == 3, proc.stderr
    assert says in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _bad_inputs(
    cli: Cli, target: PostgresSettings, source: PostgresSettings, local_stack: Stack, unique: str
) -> None:
    other = ["--to-tenant", "tenant-077", "--target-dsn", target.dsn()]
    _one_line_error(cli, ["--from-tenant", "tenant-999", *other], "unknown tenant 'tenant-999'")
    same = ["--from-tenant", A, "--to-tenant", A, "--target-dsn", source.dsn()]
    _one_line_error(cli, same, f"both {A!r} in the same database")
    moved = ["--from-tenant", A, "--to-tenant", B, "--target-dsn", target.dsn(),
             "--id-offset", str(OFFSET), "--dest", "/tmp/elsewhere"]  # fmt: skip
    _one_line_error(cli, moved, "works at the lake")
    busy = ["--from-tenant", "tenant-002", "--to-tenant", B, "--target-dsn", target.dsn()]
    _one_line_error(cli, busy, "already holds")
    with fresh_database(local_stack.pg, f"sw_migbad_{unique}") as bad:
        with psycopg2.connect(bad.dsn()) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE issues (tenant_id text, id bigint, summary integer)")
        conn.close()
        args = ["--from-tenant", A, "--to-tenant", B, "--target-dsn", bad.dsn()]
        _one_line_error(
            cli, args, "table public.issues in the target differs from the source schema"
        )
