from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import psycopg2

from sluiceway.common.settings import PostgresSettings
from sluiceway.producers.events import lsn_to_int
from sluiceway.producers.source import source_tables
from tests.conftest import Cli

RATE, SECONDS = 500, 3


def live_keys(pg: PostgresSettings) -> set[tuple[str, str, int]]:
    keys: set[tuple[str, str, int]] = set()
    with closing(psycopg2.connect(pg.dsn())) as conn, conn.cursor() as cur:
        for entity, table in source_tables().items():
            cur.execute(f"SELECT tenant_id, id FROM {table}")
            keys.update((tenant, entity, key) for tenant, key in cur.fetchall())
    return keys


def test_churn_ledger_matches_the_database(
    cli: Cli, source_db: PostgresSettings, tmp_path: Path
) -> None:
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "20")
    before = live_keys(source_db)
    ledger = tmp_path / "ledger.jsonl"
    summary = cli.json(
        "source", "churn", "--rate", str(RATE), "--seconds", str(SECONDS),
        "--seed", "11", "--ledger", str(ledger),
    )  # fmt: skip
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert abs(len(lines) - RATE * SECONDS) <= 0.4 * RATE * SECONDS
    assert summary["changes"] == len(lines)
    assert summary["transactions"] == len({line["xid"] for line in lines})

    last: dict[tuple[str, str, int], str] = {}
    for line in lines:
        key = (line["tenant_id"], line["entity"], line["id"])
        assert (line["op"] == "c") == (key not in before and key not in last)
        last[key] = line["op"]
    after = live_keys(source_db)
    for key, op in last.items():
        assert (key in after) == (op != "d"), (key, op)
    untouched = before - set(last)
    assert after == untouched | {k for k, op in last.items() if op != "d"}
    assert {line["tenant_id"] for line in lines} == {"tenant-001", "tenant-002"}


def test_churn_ledger_is_in_commit_order(
    cli: Cli, source_db: PostgresSettings, tmp_path: Path
) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "10")
    ledger = tmp_path / "ledger.jsonl"
    cli("source", "churn", "--rate", "200", "--seconds", "1", "--ledger", str(ledger))
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    lsns = [lsn_to_int(line["commit_lsn_upper"]) for line in lines]
    assert lsns == sorted(lsns)
    by_xid: dict[int, list[int]] = {}
    for line in lines:
        by_xid.setdefault(line["xid"], []).append(line["seq"])
    assert all(seqs == list(range(len(seqs))) for seqs in by_xid.values())
    with closing(psycopg2.connect(source_db.dsn())) as conn, conn.cursor() as cur:
        cur.execute("SELECT max(updated) > now() - interval '1 minute' FROM issues")
        assert cur.fetchone() == (True,)


def test_churn_bad_input_is_one_line(cli: Cli, tmp_path: Path) -> None:
    ledger = str(tmp_path / "ledger.jsonl")
    unseeded = cli("source", "churn", "--seconds", "1", "--ledger", ledger, check=False)
    assert unseeded.returncode == 3
    assert "sluiceway source seed" in unseeded.stderr
    assert len(unseeded.stderr.strip().splitlines()) == 1
    for option in ("--rate", "--seconds"):
        proc = cli("source", "churn", option, "0", "--ledger", ledger, check=False)
        assert proc.returncode != 0
        assert option in proc.stderr and "greater than 0" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
