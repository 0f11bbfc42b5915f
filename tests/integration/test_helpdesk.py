"""The help desk example end to end on the real stack: uuid keys (customers, tickets), a
composite key holding the tenant column (replies: ``org_id, ticket_id, n``), a bigint key
with a tenant column outside it (attachments), a self-reference and a three-level chain.

Its schema-per-tenant entities (articles, votes) are left out here: test_tenant_schemas.py
captures them, tenant schemas created while capture runs included. The tables are seeded
by ``sluiceway source seed --catalog``; replies keep the default replica identity (a delete
carries only the key columns), the tables whose tenant column is outside the key get
REPLICA IDENTITY FULL. They are captured (snapshot, then live inserts, updates and deletes
on every kind of key), exported full and as a delta, reconstructed (full plus delta),
copied to another tenant (remap), replayed as of a moment between the two sets of changes
and that replay restored into a fresh database. The source, read with SQL, is the truth:
every cell of every key is compared."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow.parquet as pq
import pytest

from sluiceway.common.catalog import Catalog
from sluiceway.common.pgtypes import column_type
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli, Stack, fresh_database, settings_env
from tests.integration.helpdesk_truth import (
    OUTSIDE_KEY,
    plain,
    source_rows,
    write_catalog,
)
from tests.integration.test_capture import snapshot_done, start_capture, wait_caught_up
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANTS = ("1", "2")


def _execute(pg: PostgresSettings, statement: str, *params: Any) -> None:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
    conn.close()


def _one(pg: PostgresSettings, query: str) -> Any:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(query)
        found = cur.fetchone()
    conn.close()
    assert found is not None, query
    return found[0]


def _drop_ticket(pg: PostgresSettings, where: str) -> None:
    """Delete one ticket with its attachments and replies (children first: foreign keys)."""
    ticket = _one(pg, f"SELECT id FROM public.tickets WHERE {where} ORDER BY id LIMIT 1")
    _execute(pg, "DELETE FROM public.attachments WHERE ticket_id = %s", ticket)
    _execute(pg, "UPDATE public.replies SET parent_n = NULL WHERE ticket_id = %s", ticket)
    _execute(pg, "DELETE FROM public.replies WHERE ticket_id = %s", ticket)
    _execute(pg, "DELETE FROM public.tickets WHERE id = %s", ticket)


LEAF_REPLIES_DELETE = """
DELETE FROM public.replies r WHERE n %% 3 = 0
  AND NOT EXISTS (SELECT 1 FROM public.replies c
                  WHERE c.org_id = r.org_id AND c.ticket_id = r.ticket_id AND c.parent_n = r.n)
  AND NOT EXISTS (SELECT 1 FROM public.attachments a
                  WHERE a.org_id = r.org_id AND a.ticket_id = r.ticket_id AND a.reply_n = r.n)
"""


def first_changes(pg: PostgresSettings) -> None:
    """Inserts, updates and deletes on every kind of key, after the snapshot."""
    _execute(pg, "UPDATE public.customers SET name = name || ' (renamed)', vip = NOT vip "
                 "WHERE id IN (SELECT id FROM public.customers ORDER BY id LIMIT 3)")  # fmt: skip
    _execute(pg, "UPDATE public.replies SET body = 'edited / ' || body WHERE n %% 2 = 1")
    # leaf replies (nothing answers them, nothing is attached): deleted by composite key
    _execute(pg, LEAF_REPLIES_DELETE)
    _execute(pg, "DELETE FROM public.attachments WHERE id %% 4 = 0")
    _drop_ticket(pg, "org_id = 1")
    _execute(pg, "INSERT INTO public.customers (org_id, id, name, vip, created_at, updated_at) "
                 "VALUES (1, 'ffffffff-0000-4000-8000-000000000001', 'new / one', true, "
                 "now(), now()), (2, 'ffffffff-0000-4000-8000-000000000002', 'gone', false, "
                 "now(), now())")  # fmt: skip
    _execute(pg, "DELETE FROM public.customers WHERE id = 'ffffffff-0000-4000-8000-000000000002'")


def later_changes(pg: PostgresSettings) -> None:
    """What the delta carries: more updates and deletes, one ticket deleted per tenant."""
    _execute(pg, "UPDATE public.tickets SET subject = 'later ' || subject, priority = 5 WHERE "
                 "id IN (SELECT id FROM public.tickets ORDER BY id DESC LIMIT 4)")  # fmt: skip
    _drop_ticket(pg, "org_id = 2")
    _execute(pg, "DELETE FROM public.customers WHERE id = 'ffffffff-0000-4000-8000-000000000001'")
    _execute(pg, "UPDATE public.attachments SET file_name = 'renamed.bin' WHERE id %% 3 = 1")


def parquet_differences(
    catalog: Catalog, entity: str, source: dict[tuple[Any, ...], Any], path: Path
) -> list[str]:
    """Every cell of the reconstruction against the source's parsed text form."""
    found = catalog.entity(entity)
    kinds = {c.name: column_type(c, catalog.types) for c in found.columns}
    rows = pq.read_table(path).to_pylist()
    got = {(r["tenant_id"], *(str(r[k]) for k in found.record_key)): r for r in rows}
    if got.keys() != source.keys():
        return [f"{entity}: keys {sorted(got.keys() ^ source.keys())[:5]} differ"]
    return [
        f"{entity} {key} {name}: {row[name]!r}"
        for key, row in got.items()
        for name, kind in kinds.items()
        if plain(row[name]) != plain(kind.parse_text(source[key][name]))
    ]


@pytest.mark.parametrize("plugin", ["pgoutput", "wal2json"])
def test_uuid_and_composite_keys_are_captured_exported_reconstructed_and_restored(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, local_stack: Stack,
    unique: str, plugin: str,
) -> None:  # fmt: skip
    catalog_file = tmp_path / "catalog.yaml"
    catalog = write_catalog(catalog_file)
    cli = Cli(settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(catalog_file)}))
    cli("source", "seed", "--catalog", str(catalog_file), "--tenants", "2",
        "--rows-per-tenant", "12", "--seed", "5")  # fmt: skip
    for table in OUTSIDE_KEY:  # their deletes must carry the tenant column too
        _execute(source_db, f"ALTER TABLE public.{table} REPLICA IDENTITY FULL")
    slot = f"sw_{unique}"
    lake = tmp_path / "lake"
    capture = start_capture(cli, tmp_path, slot, SLUICEWAY_CAPTURE_PLUGIN=plugin)
    try:
        wait_for(lambda: capture.assert_alive() or snapshot_done(kafka, slot), 60, "the snapshot")
        first_changes(source_db)
        wait_caught_up(source_db, slot, capture, timeout=60)
        cli.json("export", "start", "--spec", str(_spec(tmp_path, lake, "full")), "--wait",
                 timeout=300)  # fmt: skip
        at_full = {e: source_rows(source_db, catalog, e) for e in catalog.names}
        moment = _one(source_db, "SELECT clock_timestamp()")  # before the later changes
        later_changes(source_db)
        wait_caught_up(source_db, slot, capture, timeout=60)
    finally:
        capture.stop()
    delta = cli.json("export", "start", "--spec", str(_spec(tmp_path, lake, "delta")), "--wait",
                     timeout=300)  # fmt: skip
    assert sum(delta["rows"].values()) > 0
    source = {e: source_rows(source_db, catalog, e) for e in catalog.names}
    assert all(len(rows) > 5 for rows in source.values()), {e: len(r) for e, r in source.items()}
    for entity in catalog.names:
        out = tmp_path / f"{entity}.parquet"
        cli("reconstruct", "--dest", str(lake), "--table", entity, "--out", str(out))
        assert parquet_differences(catalog, entity, source[entity], out) == []
    remapped_keys_follow(cli, catalog, tmp_path, source)
    replay = tmp_path / "replay"
    cli.json("replay", "--to", moment.isoformat(), "--tenant", "1", "--tenant", "2",
             "--dest", str(replay), "--wait", timeout=300)  # fmt: skip
    for entity in catalog.names:
        out = tmp_path / f"replayed-{entity}.parquet"
        cli("reconstruct", "--dest", str(replay), "--table", entity, "--out", str(out))
        assert parquet_differences(catalog, entity, at_full[entity], out) == []
    with fresh_database(local_stack.pg, f"sw_restore_{unique}") as target:
        # the replay as of the moment the later changes began: the source as it was then
        restored = cli.json("restore", "--from", str(replay), "--target-dsn", target.dsn())
        assert restored["rows"] == {e: len(at_full[e]) for e in catalog.names}
        for entity in catalog.names:
            assert source_rows(target, catalog, entity) == at_full[entity], entity


def _spec(tmp_path: Path, lake: Path, run_type: str) -> Path:
    path = tmp_path / f"{run_type}.yaml"
    path.write_text(f"tenants: {list(TENANTS)}\ndestination: {lake}\ntype: {run_type}\n")
    return path


def remapped_keys_follow(
    cli: Cli, catalog: Catalog, tmp_path: Path, source: dict[str, dict[tuple[Any, ...], Any]]
) -> None:
    """Tenant 1 copied as tenant 9: uuids mapped by UUIDv5, integers by the offset, every
    key and reference moved alike (the source's keys, mapped, are the copy's keys)."""
    lake = tmp_path / "remapped"
    spec = tmp_path / "remap.yaml"
    spec.write_text(
        f"tenants: ['1']\ndestination: {lake}\nremap: {{tenant: '9', id_offset: 1000}}\n"
    )
    cli.json("export", "start", "--spec", str(spec), "--wait", timeout=300)
    for entity in catalog.names:
        found = catalog.entity(entity)
        ids = [
            c for c in found.column_names if c in {*found.record_key, *_reference_columns(found)}
        ]
        out = tmp_path / f"remapped-{entity}.parquet"
        cli("reconstruct", "--dest", str(lake), "--table", entity, "--out", str(out))
        got = {tuple(str(r[c]) for c in ids) for r in pq.read_table(out).to_pylist()}
        kinds = {c: column_type(found.column(c), catalog.types).avro for c in ids}
        want = {
            tuple(_moved(kinds[c], row[c]) for c in ids)
            for key, row in source[entity].items()
            if key[0] == "1"
        }
        assert got == want, entity


def _reference_columns(entity: Any) -> set[str]:
    return {c for ref in entity.references for c in ref.columns}


def _moved(avro: Any, text: str | None) -> str | None:
    if text is None:
        return "None"
    if avro in ("int", "long"):
        return str(int(text) + 1000)
    if isinstance(avro, dict) and avro.get("logicalType") == "uuid":
        return str(uuid.uuid5(uuid.UUID(text), "9"))
    return text
