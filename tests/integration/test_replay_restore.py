"""Replay a backup as of a time from the change topics, then restore it into a fresh database.

The source tables recorded at TIME are the truth: later churn must not reach the backup.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.lake.storage import s3_filesystem
from tests.catalogs import ENTITIES
from tests.conftest import Cli, Stack, fresh_database
from tests.integration.capture_harness import CaptureProcess, settings_for_capture
from tests.integration.test_capture import (
    _normalise,
    churn,
    finish,
    snapshot_done,
    source_rows,
    wait_caught_up,
)
from tests.integration.test_full_after_churn import lake_rows
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANT = "tenant-002"
Truth = dict[tuple[str, bytes], dict[str, Any]]


def _tenant_only(rows: Truth) -> Truth:
    return {k: v for k, v in rows.items() if k[1].startswith(f"{TENANT}/".encode())}


def _capture_churn_and_record(
    cli: Cli, kafka: KafkaSettings, pg: PostgresSettings, tmp_path: Path, slot: str
) -> tuple[Truth, datetime]:
    """Capture with churn, pause, record the source and TIME, then churn again past TIME."""
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        finish(churn(cli, tmp_path / "before.jsonl", rate=300, seconds=3, seed=5), 60)
        wait_caught_up(pg, slot, capture, timeout=60)
        truth, moment = source_rows(pg), datetime.now(UTC)
        # later commits must fall after TIME, even in TIME's own millisecond
        wait_for(lambda: datetime.now(UTC) > moment + timedelta(milliseconds=2), 5, "the clock")
        after = finish(churn(cli, tmp_path / "after.jsonl", rate=300, seconds=2, seed=6), 60)
        assert after["changes"] > 100
        wait_caught_up(pg, slot, capture, timeout=60)
    finally:
        capture.stop()
    assert _tenant_only(source_rows(pg)) != _tenant_only(truth), "the second churn changed nothing"
    return truth, moment


def _assert_lake_equals(lake: Path, etl_id: str, truth: Truth) -> None:
    for entity in ENTITIES:
        got = lake_rows(lake, entity, etl_id)
        assert {r["_tenant_id"] for r in got} <= {TENANT}, f"{entity}: another tenant's rows"
        expected = {key: row for (e, key), row in truth.items() if e == entity}
        rows = {f"{r['_tenant_id']}/{r['id']}".encode(): r for r in got}
        assert len(rows) == len(got), f"{entity}: a key repeats"
        assert sorted(rows) == sorted(expected), f"{entity}: keys differ from the source at TIME"
        for key, row in rows.items():
            own = {k: _normalise(v) for k, v in row.items() if not k.startswith("_")}
            assert own == expected[key], (entity, key)


def test_replay_to_time_then_restore_equals_the_source_at_that_time(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, local_stack: Stack,
    tmp_path: Path, unique: str,
) -> None:  # fmt: skip
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "60", "--seed", "21")
    truth, moment = _capture_churn_and_record(cli, kafka, source_db, tmp_path, f"sw_{unique}")
    truth = _tenant_only(truth)
    lake = tmp_path / "lake"
    to = moment.isoformat()
    result = cli.json("replay", "--to", to, "--tenant", TENANT, "--dest", str(lake), "--wait")
    _assert_lake_equals(lake, result["etl_id"], truth)
    manifest = json.loads((lake / "_runs" / f"{result['etl_id']}.json").read_text())
    assert manifest["type"] == "full" and manifest["replay_to"] == to

    with fresh_database(local_stack.pg, f"sw_restore_{unique}") as target:
        restored = cli.json("restore", "--from", str(lake), "--target-dsn", target.dsn())
        assert restored["rows"] == {e: sum(1 for k in truth if k[0] == e) for e in ENTITIES}
        assert source_rows(target) == truth
        again = cli("restore", "--from", str(lake), "--target-dsn", target.dsn(), check=False)
        assert (
            again.returncode == 3
            and "already holds" in again.stderr
            and "--replace" in again.stderr
        )
        cli("restore", "--from", str(lake), "--target-dsn", target.dsn(), "--replace")
        assert source_rows(target) == truth
    _on_s3(cli, local_stack, unique, to, truth)
    _bad_inputs(cli, lake, local_stack, unique)


def _on_s3(cli: Cli, local_stack: Stack, unique: str, to: str, truth: Truth) -> None:
    """The same replay on S3, restored from there, gives the same tables."""
    dest = f"s3://{local_stack.s3.bucket}/replay-{unique}"
    cli("replay", "--to", to, "--tenant", TENANT, "--dest", dest, "--wait")
    try:
        with fresh_database(local_stack.pg, f"sw_s3restore_{unique}") as target:
            cli("restore", "--from", dest, "--target-dsn", target.dsn(), "--tenant", TENANT)
            assert source_rows(target) == truth
    finally:
        s3_filesystem(local_stack.s3).delete_dir(f"{local_stack.s3.bucket}/replay-{unique}")


def _bad_inputs(cli: Cli, lake: Path, local_stack: Stack, unique: str) -> None:
    for value, says in [
        ("last tuesday", "is not a time"),
        ((datetime.now(UTC) + timedelta(hours=1)).isoformat(), "is in the future"),
        ("2001-01-01T00:00:00Z", "before the first captured change"),
    ]:
        proc = cli("replay", "--to", value, "--tenant", TENANT, "--dest", str(lake), check=False)
        assert proc.returncode == 3, proc.stderr
        assert says in proc.stderr and value[:19] in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    with fresh_database(local_stack.pg, f"sw_badrestore_{unique}") as target:
        with psycopg2.connect(target.dsn()) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE issues (tenant_id text, id bigint, summary integer)")
        conn.close()
        proc = cli("restore", "--from", str(lake), "--target-dsn", target.dsn(), check=False)
        assert proc.returncode == 3
        assert "table public.issues in the target differs from the source schema" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        with psycopg2.connect(target.dsn()) as conn, conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            assert [r[0] for r in cur.fetchall()] == ["issues"], "restore wrote something"
            cur.execute("SELECT count(*) FROM issues")
            assert cur.fetchone()[0] == 0
        conn.close()


SOURCE, TARGET, OFFSET = "tenant-001", "tenant-042", 1_000_000


def _full(cli: Cli, tmp_path: Path, name: str, **policy: Any) -> Path:
    """A full export of SOURCE with ``policy`` to its own lake."""
    lake, spec = tmp_path / name, tmp_path / f"{name}.json"
    spec.write_text(json.dumps({"tenants": [SOURCE], "destination": str(lake), **policy}))
    cli("export", "start", "--spec", str(spec), "--wait")
    return lake


def _of(rows: Truth, tenant: str) -> Truth:
    return {k: v for k, v in rows.items() if k[1].startswith(f"{tenant}/".encode())}


def _refused(cli: Cli, lake: Path, dsn: str, *more: str) -> str:
    proc = cli("restore", "--from", str(lake), "--target-dsn", dsn, *more, check=False)
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1, proc.stdout + proc.stderr
    return proc.stderr


def _edit_manifest(lake: Path, copy: Path, change: Any) -> Path:
    shutil.copytree(lake, copy)
    path = next((copy / "_runs").glob("*.json"))
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    return copy


def test_restore_refuses_what_is_not_the_tenants_data_and_never_commits_a_wipe(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, local_stack: Stack,
    tmp_path: Path, unique: str,
) -> None:  # fmt: skip
    """A remapped export's rows carry the remap's tenant: restored only as that tenant, named;
    redacted exports, manifests that disagree with their rows and a --replace that would
    delete a tenant and load nothing are refused, and the target keeps what it held."""
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "10", "--seed", "4")
    slot = f"sw_{unique}"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 60, "the initial snapshot")
        plain = _full(cli, tmp_path, "plain")
        remapped = _full(cli, tmp_path, "remapped",
                         remap={"tenant": TARGET, "id_offset": OFFSET})  # fmt: skip
        masked = _full(cli, tmp_path, "masked", pii={"user.email_address": "mask"})
    finally:
        capture.stop()
    truth = _of(source_rows(source_db), SOURCE)
    with fresh_database(local_stack.pg, f"sw_remap_{unique}") as target:
        dsn = target.dsn()
        cli("restore", "--from", str(plain), "--target-dsn", dsn)
        assert source_rows(target) == truth
        says = _refused(cli, remapped, dsn, "--replace")
        assert f"remapped to tenant {TARGET}" in says and f"--as-tenant {TARGET}" in says, says
        assert "--as-tenant" in _refused(cli, remapped, dsn, "--as-tenant", SOURCE)
        assert "--as-tenant" in _refused(cli, plain, dsn, "--replace", "--as-tenant", TARGET)
        assert "is redacted (user.email_address: mask)" in _refused(cli, masked, dsn, "--replace")
        unlabelled = _edit_manifest(remapped, tmp_path / "old", lambda d: d.pop("policy"))
        says = _refused(cli, unlabelled, dsn, "--replace")
        assert f"holds rows of tenant '{TARGET}'" in says and SOURCE in says, says
        partial = _edit_manifest(plain, tmp_path / "part", lambda d: d["policy"].update(
            opt_out=["T1P1"]))  # fmt: skip
        says = _refused(cli, partial, dsn, "--replace")
        assert "holds only part of its tenants' rows (opt_out ['T1P1'])" in says, says
        emptied = _edit_manifest(plain, tmp_path / "empty", _no_files)
        says = _refused(cli, emptied, dsn, "--replace")
        assert f"would delete {len(truth)} rows of tenant {SOURCE} and load none" in says, says
        assert source_rows(target) == truth, "a refused restore changed the target"

        cli("restore", "--from", str(remapped), "--target-dsn", dsn, "--as-tenant", TARGET)
        restored = source_rows(target)
        assert _of(restored, SOURCE) == truth
        moved = {(e, int(k.decode().partition("/")[2]) - OFFSET) for e, k in _of(restored, TARGET)}
        assert moved == {(e, int(k.decode().partition("/")[2])) for e, k in truth}


def _no_files(document: dict[str, Any]) -> None:
    for entry in document["tables"].values():
        entry.update(files=[], rows=0, bytes=0)
