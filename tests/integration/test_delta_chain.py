"""A full export and three deltas taken under churn reconstruct to the source tables.

Reconstruction is docs/guide.md's plain SQL (the text `sluiceway reconstruct` runs), in DuckDB
over the files: the latest `_position` per (`_tenant_id`, `id`) wins, and keys whose latest
row is a delete go.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from sluiceway.common.kafka_io import load_run
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.tools.reconstruct.sql import read_parquet_rows, reconstruct_sql
from tests.catalogs import ENTITIES
from tests.conftest import Cli
from tests.integration.capture_harness import CaptureProcess, settings_for_capture
from tests.integration.test_capture import (
    _normalise,
    churn,
    finish,
    snapshot_done,
    source_rows,
    wait_caught_up,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANT = "tenant-001"


def reconstruct(lake: Path, entity: str) -> dict[int, dict[str, Any]]:
    files = sorted(str(p) for p in lake.rglob(f"*/{entity}/*/part-*.parquet"))
    if not files:
        return {}
    relation = duckdb.sql(reconstruct_sql(read_parquet_rows(files)))
    assert relation is not None
    names = relation.columns
    return {
        row[names.index("id")]: dict(zip(names, row, strict=True)) for row in relation.fetchall()
    }


def export(cli: Cli, lake: Path, run_type: str) -> dict[str, Any]:
    result: dict[str, Any] = cli.json(
        "export", "start", "--tenant", TENANT, "--type", run_type, "--dest", str(lake), "--wait"
    )
    return result


@pytest.mark.parametrize("path", ["scan", "index"])
def test_full_plus_three_deltas_under_churn_equals_the_source(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str,
    path: str,
) -> None:  # fmt: skip
    # index: every run reads through the tenant offset index (what it does not cover yet,
    # the tail capture has not indexed, is read whole)
    cli = Cli({**cli.env, "SLUICEWAY_KAFKA_TENANT_INDEX": {"scan": "off", "index": "always"}[path]})
    cli("source", "seed", "--tenants", "3", "--issues-per-tenant", "40", "--seed", "21")
    slot, lake = f"sw_{unique}", tmp_path / "lake"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        writer = churn(cli, tmp_path / "ledger.jsonl", rate=300, seconds=20, seed=5)
        runs = [export(cli, lake, "full"), export(cli, lake, "delta"), export(cli, lake, "delta")]
        finish(writer, timeout=120)
        wait_caught_up(source_db, slot, capture, timeout=120)
        runs.append(export(cli, lake, "delta"))
    finally:
        capture.stop()
    assert len({r["etl_id"] for r in runs}) == 4
    assert {(load_run(kafka, r["etl_id"]).read_path or {}).get("path") for r in runs} == {path}
    assert sum(sum(r["rows"].values()) for r in runs[1:3]) > 0  # the deltas saw churn
    deltas = list(lake.glob("*/*/*/daily-export/delta-export/*/*/*/*/*"))
    # a delta whose window saw no change has a manifest but no files
    assert {p.name for p in deltas} == {r["etl_id"] for r in runs[1:] if sum(r["rows"].values())}
    truth = source_rows(source_db)
    for entity in ENTITIES:
        expected = {
            row["id"]: row for (e, key), row in truth.items()
            if e == entity and key.startswith(f"{TENANT}/".encode())
        }  # fmt: skip
        got = reconstruct(lake, entity)
        assert set(got) == set(expected), entity
        for entity_id, row in expected.items():
            mine = {k: _normalise(got[entity_id][k]) for k in row}
            assert mine == row, (entity, entity_id)


SECRET = "chain-secret-0f3c9a7d51e24b8c"


def spec_file(tmp_path: Path, lake: Path, run_type: str, **policy: Any) -> Path:
    spec = {"tenants": [TENANT], "type": run_type, "destination": str(lake), **policy}
    path = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.json"
    path.write_text(json.dumps(spec))
    return path


def test_a_delta_with_another_policy_is_refused_by_name(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    """The chain's policy is recorded; a delta that would make its rows another way (another
    pii rule or secret, an opt-out, a remap) is refused, and reconstruct refuses a chain whose
    delta manifest says so; a full export starts a new chain with the new policy."""
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "10", "--seed", "9")
    slot, lake = f"sw_{unique}", tmp_path / "lake"
    chain = {"pii": {"user.email_address": "hash"}, "pii_secret": SECRET}
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        full = cli.json(
            "export", "start", "--spec", str(spec_file(tmp_path, lake, "full", **chain)), "--wait"
        )
        for other, says in [
            ({**chain, "pii_secret": SECRET + "x"}, "pii_secret differs"),
            (
                {**chain, "pii": {"user.email_address": "mask"}},
                "pii is {'user.email_address': 'mask'} here but {'user.email_address': 'hash'}",
            ),
            ({**chain, "opt_out": ["T1P1"]}, "opt_out is ['T1P1'] here but unset in the chain"),
            ({**chain, "remap": {"tenant": "tenant-777"}}, "remap is {'tenant': 'tenant-777'"),
            ({}, "pii is unset here but {'user.email_address': 'hash'} in the chain"),
        ]:
            delta_spec = spec_file(tmp_path, lake, "delta", **other)
            proc = cli("export", "start", "--spec", str(delta_spec), check=False)
            assert proc.returncode == 3 and says in proc.stderr, (other, proc.stderr)
            assert proc.stderr.count("\n") == 1 and SECRET not in proc.stderr, proc.stderr
        delta = cli.json(
            "export", "start", "--spec", str(spec_file(tmp_path, lake, "delta", **chain)), "--wait"
        )
    finally:
        capture.stop()
    manifests = [
        json.loads((lake / "_runs" / f"{r['etl_id']}.json").read_text()) for r in (full, delta)
    ]
    policies = [m["policy"] for m in manifests]
    assert policies[0] == policies[1] and policies[0]["pii"] == chain["pii"]
    assert len(policies[0]["pii_secret_fingerprint"]) >= 16
    assert all(SECRET not in p.read_text() for p in lake.rglob("*.json"))
    _reconstruct_refuses_a_changed_delta(cli, lake, delta["etl_id"], tmp_path)
    # a full export with the new policy starts a new chain, which reconstructs
    cli("export", "start", "--spec", str(spec_file(tmp_path, lake, "full")), "--wait")
    out = tmp_path / "new-chain.parquet"
    cli("reconstruct", "--dest", str(lake), "--table", "user", "--out", str(out))
    emails = {r["email_address"] for r in pq.read_table(out).to_pylist()}
    assert emails and all("@" in e for e in emails), "the new chain's rows are not hashed"


def _reconstruct_refuses_a_changed_delta(cli: Cli, lake: Path, delta: str, tmp_path: Path) -> None:
    """A delta manifest with another policy (written by hand, or by an older version that did
    not check) breaks the chain for reconstruct."""
    manifest = lake / "_runs" / f"{delta}.json"
    document = json.loads(manifest.read_text())
    document["policy"]["opt_out"] = ["T1P1"]
    manifest.write_text(json.dumps(document))
    out = tmp_path / "out" / "issue.parquet"
    proc = cli(
        "reconstruct", "--dest", str(lake), "--table", "issue", "--out", str(out), check=False
    )
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"delta {delta} was made with another policy" in proc.stderr, proc.stderr
    assert "opt_out is ['T1P1'] here but unset in the chain" in proc.stderr
    assert not out.parent.exists()
