"""Reconstruct end to end on a small hand-made local lake (no stack): the result, and that a
failure while writing leaves neither the target nor a temporary behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluiceway.common.settings import S3Settings
from sluiceway.tools.reconstruct import engine, write
from sluiceway.tools.reconstruct.errors import TargetWriteError
from sluiceway.tools.reconstruct.target import parse_target
from tests.manifests import complete_manifest

TOPIC = "sw.cdc.project"
FULL, DELTA, QUIET = "20261122T100000Z-aaaa", "20261122T101000Z-bbbb", "20261122T102000Z-cccc"
TS = datetime(2026, 11, 22, tzinfo=UTC)


def rows_file(
    lake: Path, etl_id: str, rows: list[dict[str, Any]], drop: str = ""
) -> dict[str, Any]:
    """A part file of ``project`` rows; ``drop`` leaves a column out, as an older schema would."""
    table = pa.Table.from_pylist(
        [{**r, "_op": "u", "_source_ts": TS, "_etl_id": etl_id} for r in rows]
    )
    if drop:
        table = table.drop_columns([drop])
    relative = f"2026/11/22/daily-export/x/project/{etl_id}/part-00000-{0:020d}.parquet"
    (lake / relative).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, lake / relative)
    return {"path": relative, "rows": len(rows), "bytes": 1, "partition": 0, "start_offset": 0}


def run_manifest(
    lake: Path, etl_id: str, kind: str, offsets: tuple[int, int], files: list[Any]
) -> None:
    start, cut = offsets
    document = {
        "etl_id": etl_id, "type": kind, "status": "complete",
        "spec": {"tenants": ["t1"], "entities": ["project"], "format": "parquet"},
        "start": {TOPIC: {"0": start}}, "cut": {TOPIC: {"0": cut}},
        "tables": {"project": {"rows": sum(f["rows"] for f in files), "files": files}},
    }  # fmt: skip
    (lake / "_runs").mkdir(parents=True, exist_ok=True)
    (lake / "_runs" / f"{etl_id}.json").write_text(json.dumps(complete_manifest(document)))


def row(entity_id: int, name: str | None, position: int, deleted: bool = False) -> dict[str, Any]:
    return {"id": entity_id, "name": name, "lead": "x", "_tenant_id": "t1",
            "_deleted": deleted, "_position": position}  # fmt: skip


def skip(_files: int) -> None:
    """No progress bar in tests."""


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    full = [row(1, "a", 1), row(2, "b", 2), row(3, "c", 3)]
    run_manifest(root, FULL, "full", (0, 10), [rows_file(root, FULL, full)])
    delta = [row(1, "a2", 11), row(2, None, 12, deleted=True), row(4, "d", 13)]
    run_manifest(root, DELTA, "delta", (10, 20), [rows_file(root, DELTA, delta, drop="lead")])
    run_manifest(root, QUIET, "delta", (20, 20), [])
    return root


def test_full_plus_deltas_to_parquet(lake: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "p.parquet"
    checked = engine.check(engine.prepare(str(lake), "project", None, str(out), S3Settings()), skip)
    summary = engine.run(checked)
    got = pq.read_table(out).to_pylist()
    assert got == [
        {"tenant_id": "t1", "id": 1, "name": "a2", "lead": None},  # the delta's file lacks lead
        {"tenant_id": "t1", "id": 3, "name": "c", "lead": "x"},
        {"tenant_id": "t1", "id": 4, "name": "d", "lead": None},
    ]
    assert (summary["rows_in"], summary["rows_out"], summary["as_of"]) == (6, 3, QUIET)
    assert [p.name for p in out.parent.iterdir()] == ["p.parquet"]  # no temporary left


def test_as_of_the_full_export_with_metadata_to_duckdb(lake: Path, tmp_path: Path) -> None:
    out = f"duckdb://{tmp_path / 'x.db'}#p"
    job = engine.prepare(str(lake), "project", FULL, out, S3Settings(), with_metadata=True)
    engine.run(engine.check(job, skip))
    with duckdb.connect(str(tmp_path / "x.db")) as con:
        got = con.sql("SELECT id, name, _position FROM p ORDER BY id")
        assert got is not None and got.fetchall() == [(1, "a", 1), (2, "b", 2), (3, "c", 3)]


def failing(schema: pa.Schema) -> pa.RecordBatchReader:
    def batches() -> Any:
        yield pa.record_batch({"id": [1]}, schema=schema)
        raise OSError("disk full")

    return pa.RecordBatchReader.from_batches(schema, batches())


def test_a_parquet_write_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    target = parse_target(str(tmp_path / "p.parquet"), "project")
    schema = pa.schema([("id", pa.int64())])
    with pytest.raises(OSError, match="disk full"):
        write.write_parquet(target, failing(schema), S3Settings())
    assert list(tmp_path.iterdir()) == []


def test_a_duckdb_write_that_fails_leaves_no_new_database(
    lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "x.db"
    checked = engine.check(
        engine.prepare(str(lake), "project", None, f"duckdb://{out}#p", S3Settings()), print
    )

    def broken_query(_checked: engine.Checked) -> str:
        return "SELECT no_such_column FROM lake_rows"

    monkeypatch.setattr(engine, "query", broken_query)
    with pytest.raises(TargetWriteError, match=f"cannot write duckdb://{out}#p: .*no_such"):
        engine.run(checked)
    assert list(tmp_path.iterdir()) == [lake]
