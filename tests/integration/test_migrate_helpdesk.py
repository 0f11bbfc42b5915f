"""Migrate on the help desk example: organisation 1 copied into organisation 9 of a fresh
database while its rows change, then cut over.

uuid keys, a composite key (replies: ``ticket_id, n``), tenant columns inside and outside
the key and a self-reference (a reply answering another) all move: integers by the offset,
uuids by UUIDv5 of the source uuid under the target tenant (docs/operations.md). The
source, read with SQL, is the truth: every row of the target's organisation 9 prints as the
source's organisation 1 does once those ids are moved, and ``migrate verify`` agrees."""

from __future__ import annotations

import json
import subprocess
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from sluiceway.common.catalog import Catalog
from sluiceway.common.pgtypes import column_type
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli, Stack, fresh_database, settings_env
from tests.integration.helpdesk_truth import full_identity, source_rows, write_catalog
from tests.integration.test_capture import snapshot_done, start_capture, wait_caught_up
from tests.integration.test_helpdesk import first_changes, later_changes
from tests.integration.test_migrate import _alive, _runs, _worker
from tests.polling import wait_for

pytestmark = pytest.mark.integration
A, B, OFFSET = "1", "9", 1000


def _moved_columns(catalog: Catalog, entity: str) -> set[str]:
    """The record key and every reference column: the ids the map moves (the tenant
    column is replaced, not moved)."""
    found = catalog.entity(entity)
    ids = {*found.record_key, *(c for ref in found.references for c in ref.columns)}
    return ids - {found.tenant.column}


def _move(avro: Any, text: str) -> str:
    if avro in ("int", "long"):
        return str(int(text) + OFFSET)
    if isinstance(avro, dict) and avro.get("logicalType") == "uuid":
        return str(uuid.uuid5(uuid.UUID(text), B))
    return text


def expected(catalog: Catalog, entity: str, source: PostgresSettings) -> list[dict[str, Any]]:
    """Organisation A's rows as the target must print them: tenant B, ids moved."""
    found = catalog.entity(entity)
    kinds = {c.name: column_type(c, catalog.types).avro for c in found.columns}
    moved, tenant = _moved_columns(catalog, entity), found.tenant.column
    out = []
    for row in (r for k, r in source_rows(source, catalog, entity).items() if k[0] == A):
        out.append({
            n: B if n == tenant else _move(kinds[n], v) if n in moved and v is not None else v
            for n, v in row.items()
        })  # fmt: skip
    return sorted(out, key=repr)


def actual(catalog: Catalog, entity: str, target: PostgresSettings) -> list[dict[str, Any]]:
    rows = [r for k, r in source_rows(target, catalog, entity).items() if k[0] == B]
    return sorted(rows, key=repr)


def plant_differences(target: PostgresSettings) -> tuple[str, list[Any]]:
    """One customer's name changed (a uuid key) and one leaf reply deleted (a composite
    key) in organisation B of the target; returns their keys as verify names them."""
    with closing(psycopg2.connect(target.dsn())) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT min(id::text) FROM public.customers WHERE org_id = %s", (int(B),))
        customer = cur.fetchone()[0]
        cur.execute("UPDATE public.customers SET name = 'tampered' "
                    "WHERE org_id = %s AND id = %s::uuid", (int(B), customer))  # fmt: skip
        cur.execute(
            "SELECT r.ticket_id::text, r.n FROM public.replies r WHERE r.org_id = %s "
            "AND NOT EXISTS (SELECT 1 FROM public.replies c WHERE c.org_id = r.org_id "
            "AND c.ticket_id = r.ticket_id AND c.parent_n = r.n) "
            "AND NOT EXISTS (SELECT 1 FROM public.attachments a WHERE a.org_id = r.org_id "
            "AND a.ticket_id = r.ticket_id AND a.reply_n = r.n) ORDER BY 1, 2 LIMIT 1",
            (int(B),),
        )
        ticket, n = cur.fetchone()
        cur.execute("DELETE FROM public.replies WHERE org_id = %s AND ticket_id = %s::uuid "
                    "AND n = %s", (int(B), ticket, n))  # fmt: skip
    return customer, [ticket, n]


def test_migrate_moves_uuid_and_composite_keys_and_equals_the_source(
    kafka: KafkaSettings, source_db: PostgresSettings, local_stack: Stack, tmp_path: Path,
    unique: str,
) -> None:  # fmt: skip
    catalog_file = tmp_path / "catalog.yaml"
    catalog = write_catalog(catalog_file)
    cli = Cli(settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(catalog_file)}))
    cli("source", "seed", "--catalog", str(catalog_file), "--tenants", "2",
        "--rows-per-tenant", "12", "--seed", "5")  # fmt: skip
    full_identity(source_db)
    slot, log = f"sw_{unique}", tmp_path / "migrate.log"
    capture = start_capture(cli, tmp_path, slot)
    worker: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: capture.assert_alive() or snapshot_done(kafka, slot), 60, "the snapshot")
        with fresh_database(local_stack.pg, f"sw_migrate_{unique}") as target:
            args = ["--from-tenant", A, "--to-tenant", B, "--target-dsn", target.dsn(),
                    "--id-offset", str(OFFSET), "--interval", "1",
                    "--dest", str(tmp_path / "lake")]  # fmt: skip
            worker = _worker(cli, args, log)

            def copied() -> bool:
                assert worker is not None
                _alive(worker, log)
                return _runs(target) >= 1

            wait_for(copied, 180, "the full copy")
            first_changes(source_db)  # inserts, updates, deletes by every kind of key
            later_changes(source_db)
            wait_caught_up(source_db, slot, capture, timeout=60)
            done = cli.json("migrate", "cutover", "--target-dsn", target.dsn(), "--timeout", "180",
                            timeout=240)  # fmt: skip
            assert done["status"] == "cut_over"
            assert worker.wait(60) == 0, log.read_text()[-3000:]
            for entity in catalog.names:
                want = expected(catalog, entity, source_db)
                assert len(want) > 3 and actual(catalog, entity, target) == want, entity
            report = cli.json("migrate", "verify", "--target-dsn", target.dsn())
            assert report["total_differences"] == 0, report["differences"]
            customer, reply = plant_differences(target)
            proc = cli("migrate", "verify", "--target-dsn", target.dsn(), "--json", check=False)
            assert proc.returncode == 6, proc.stderr
            assert json.loads(proc.stdout)["differences"] == [
                {"table": "customer", "id": customer, "kind": "changed", "columns": ["name"]},
                {"table": "reply", "id": reply, "kind": "missing", "columns": []},
            ]
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(10)
        capture.stop()
