"""Migrate on a catalog the demo never saw (the own-database test's: tables in schema
``ledger`` under other names, an integer tenant column ``org``, record keys ``unit_no`` and
``member_no``, a reference, a column of every mapped type): organisation 1 is copied into
organisation 42 of a fresh database, with live changes during the migration, and cut over.

The source, read with SQL, is the truth: every row of the target's organisation 42 prints as
the source's organisation 1 does, modulo the id map (the record keys and the reference moved
by the offset). ``migrate verify`` agrees, and names a difference planted in the target."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from sluiceway.common.catalog import Catalog
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli, Stack, fresh_database, settings_env
from tests.integration.test_capture import snapshot_done, start_capture, wait_caught_up
from tests.integration.test_own_database import (
    ROWS,
    live_changes,
    put_edge_row,
    source_texts,
    write_catalog,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration
A, B, OFFSET = "1", "42", 1_000_000
# Written out here, not taken from the product: the columns the id map moves.
MOVED = {"unit": ("unit_no",), "member": ("member_no", "unit_no")}


def expected(catalog: Catalog, entity: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Organisation A's rows as the target must hold them: tenant B, ids moved."""
    names = ["org", *catalog.entity(entity).column_names]
    moved = [i for i, n in enumerate(names) if n in MOVED[entity]]
    out = [
        tuple(B if i == 0 else str(int(v) + OFFSET) if i in moved and v is not None else v
              for i, v in enumerate(row))
        for row in rows if row[0] == A
    ]  # fmt: skip
    return sorted(out, key=lambda r: int(r[1]))


def _runs(target: PostgresSettings) -> int:
    with closing(psycopg2.connect(target.dsn())) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('sluiceway_migration')")
        if cur.fetchone()[0] is None:
            return 0
        cur.execute("SELECT coalesce(max(runs_applied), 0) FROM sluiceway_migration")
        runs: int = cur.fetchone()[0]
    return runs


def plant_differences(target: PostgresSettings) -> tuple[int, int]:
    """One changed cell in a unit, one member deleted; returns their keys."""
    with closing(psycopg2.connect(target.dsn())) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT min(unit_no) FROM ledger.org_units WHERE org = %s", (int(B),))
        unit = cur.fetchone()[0]
        cur.execute(
            "UPDATE ledger.org_units SET title = 'tampered' WHERE org = %s AND unit_no = %s",
            (int(B), unit),
        )
        cur.execute("SELECT min(member_no) FROM ledger.unit_members WHERE org = %s", (int(B),))
        member = cur.fetchone()[0]
        cur.execute(
            "DELETE FROM ledger.unit_members WHERE org = %s AND member_no = %s", (int(B), member)
        )
    return unit, member


def test_migrate_copies_a_catalog_of_its_own_and_verify_names_a_planted_difference(
    kafka: KafkaSettings, source_db: PostgresSettings, local_stack: Stack, tmp_path: Path,
    unique: str,
) -> None:  # fmt: skip
    catalog = write_catalog(tmp_path / "catalog.yaml")
    cli = Cli(
        settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(tmp_path / "catalog.yaml")})
    )
    cli("source", "seed", "--catalog", str(tmp_path / "catalog.yaml"), "--tenants", "2",
        "--rows-per-tenant", "12", "--seed", "5")  # fmt: skip
    for unit_no, row in zip((1000, 1001, 1002), ROWS[:3], strict=True):
        put_edge_row(source_db, catalog, unit_no, row)
    slot = f"sw_{unique}"
    capture = start_capture(cli, tmp_path, slot, SLUICEWAY_CAPTURE_PLUGIN="pgoutput")
    log = tmp_path / "migrate.log"
    worker: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: capture.assert_alive() or snapshot_done(kafka, slot), 60, "the snapshot")
        with fresh_database(local_stack.pg, f"sw_migrate_{unique}") as target:
            lake = str(tmp_path / "lake")
            args = ["--from-tenant", A, "--to-tenant", B, "--target-dsn", target.dsn(),
                    "--id-offset", str(OFFSET), "--interval", "1", "--dest", lake]  # fmt: skip
            worker = subprocess.Popen(
                [sys.executable, "-m", "sluiceway.cli", "migrate", "start", *args],
                env=cli.env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
            )  # fmt: skip

            def runs_at_least(n: int) -> bool:
                assert worker is not None and worker.poll() is None, log.read_text()[-3000:]
                return _runs(target) >= n

            wait_for(lambda: runs_at_least(1), 180, "the full copy")
            live_changes(source_db, catalog)
            wait_caught_up(source_db, slot, capture, timeout=60)
            done = cli.json("migrate", "cutover", "--target-dsn", target.dsn(), "--timeout", "180",
                            timeout=240)  # fmt: skip
            assert done["status"] == "cut_over"
            assert worker.wait(60) == 0, log.read_text()[-3000:]
            for entity in catalog.names:
                want = expected(catalog, entity, source_texts(source_db, catalog, entity))
                got = [r for r in source_texts(target, catalog, entity) if r[0] == B]
                assert len(want) > 3 and got == want, entity
            report = cli.json("migrate", "verify", "--target-dsn", target.dsn())
            assert report["total_differences"] == 0, report["differences"]
            assert {t: r["target_rows"] for t, r in report["tables"].items()} == {
                e: len(expected(catalog, e, source_texts(source_db, catalog, e)))
                for e in catalog.names
            }
            unit, member = plant_differences(target)
            proc = cli("migrate", "verify", "--target-dsn", target.dsn(), "--json", check=False)
            assert proc.returncode == 6, proc.stderr
            assert json.loads(proc.stdout)["differences"] == [
                {"table": "unit", "id": unit, "kind": "changed", "columns": ["title"]},
                {"table": "member", "id": member, "kind": "missing", "columns": []},
            ]
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(10)
        capture.stop()
