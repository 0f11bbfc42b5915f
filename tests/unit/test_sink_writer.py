"""Writing files with tiny caps: rotation, caps on disk, no loss, no temporaries, restart."""

from __future__ import annotations

import json
import logging
import random
import string
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from sluiceway.common.codec import Codec
from sluiceway.common.runs import RunRecord
from sluiceway.lake import layout, manifest, reader, storage
from sluiceway.lake.storage import Lake
from sluiceway.sinks import parquet_file, recovery, sizing
from sluiceway.sinks.config import SinkSettings
from sluiceway.sinks.rows import ColumnBuffer, arrow_schema, event_row
from sluiceway.sinks.writer import RunWriter

ETL = "20261122T010203Z-ab12"
CODEC = Codec()
ISSUE = CODEC.schemas["issue"]
SCHEMA = arrow_schema(ISSUE.record)
COLUMNS = [f["name"] for f in ISSUE.record["fields"]]
SCHEMA_ID = ISSUE.header[2:].hex()
DIRS = {"issue": layout.full_table_dir(datetime(2026, 11, 22), "issue", ETL)}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def issue_row(i: int, rnd: random.Random, long_text: int = 0) -> dict[str, Any]:
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
    text_len = long_text or rnd.randint(0, 400)
    after = {
        "id": i,
        "key": f"P-{i}",
        "project_id": i % 7,
        "project_key": "P",
        "issue_type": rnd.choice(["Bug", "Task", "Story"]),
        "summary": "".join(rnd.choices(string.ascii_letters, k=rnd.randint(5, 60))),
        "description": "".join(rnd.choices(string.printable, k=text_len)) or None,
        "environment": None,
        "creator_id": rnd.randint(1, 10**6),
        "reporter_id": None,
        "assignee_id": rnd.randint(1, 10**6),
        "parent_id": None,
        "status": "Open",
        "status_category": "new",
        "priority": None,
        "resolution": None,
        "labels": "a b",
        "story_points": rnd.random(),
        "original_estimate_seconds": None,
        "time_spent_seconds": rnd.randint(0, 10**5),
        "created": moment,
        "updated": moment,
        "due_date": date(2026, 5, 1),
        "resolution_date": None,
    }
    event = {
        "tenant_id": "t1",
        "entity": "issue",
        "entity_id": i,
        "op": "r",
        "position": 10_000 + i,
        "source_ts": moment,
        "snapshot": True,
        "after": after,
    }
    return event_row(event, ETL, COLUMNS)


def make_writer(tmp_path: Path, clock: FakeClock | None = None, **caps: Any) -> RunWriter:
    lake = storage.open_lake(str(tmp_path / "lake"), _s3())
    settings = SinkSettings(**caps)
    return RunWriter(lake, ETL, settings, clock or FakeClock(), DIRS)


def _s3() -> Any:
    from sluiceway.common.settings import S3Settings

    return S3Settings()


def feed(writer: RunWriter, count: int, partitions: int = 2, seed: int = 1) -> list[int]:
    """Write ``count`` rows spread over partitions; returns the ids written."""
    rnd = random.Random(seed)
    for i in range(count):
        writer.add("issue", i % partitions, i // partitions, SCHEMA, SCHEMA_ID, issue_row(i, rnd))
    return list(range(count))


def lake_files(writer: RunWriter) -> Iterator[Path]:
    yield from Path(writer.lake.dest.root).rglob("*")


def read_back(writer: RunWriter) -> list[tuple[Path, pq.FileMetaData, pa.Table]]:
    out = []
    for path in sorted(lake_files(writer)):
        if path.suffix == ".parquet":
            out.append((path, pq.read_metadata(path), pq.read_table(path)))
    return out


def assert_clean_and_complete(writer: RunWriter, ids: list[int]) -> None:
    leftovers = [p for p in lake_files(writer) if p.is_file() and p.name.startswith(".")]
    assert leftovers == []
    files = read_back(writer)
    got = sorted(i for _, _, t in files for i in t.column("id").to_pylist())
    assert got == ids
    assert sorted(r.path for r in writer.published) == sorted(
        str(p.relative_to(writer.lake.dest.root)) for p, _, _ in files
    )


def test_rows_cap_makes_several_exact_files(tmp_path: Path) -> None:
    writer = make_writer(tmp_path, max_rows=700, row_group_rows=128)
    ids = feed(writer, 3_000)
    writer.close_all()
    files = read_back(writer)
    assert len(files) >= 5
    for path, meta, _ in files:
        assert meta.num_rows <= 700
        partition, start = layout.parse_part_name(path.name) or (-1, -1)
        assert partition in (0, 1) and start % 700 == 0
    assert sorted(m.num_rows for _, m, _ in files).count(700) == 4
    assert_clean_and_complete(writer, ids)


@pytest.mark.parametrize(("max_bytes", "rows"), [(24_000, 300), (60_000, 3_000), (150_000, 3_000)])
def test_bytes_cap_holds_on_disk(tmp_path: Path, max_bytes: int, rows: int) -> None:
    writer = make_writer(tmp_path, max_bytes=max_bytes, row_group_rows=200)
    ids = feed(writer, rows)
    writer.close_all()
    files = read_back(writer)
    assert len(files) > 3
    for path, _, _ in files:
        assert path.stat().st_size <= max_bytes
    records = {r.path: r for r in writer.published}
    for path, meta, _ in files:
        record = records[str(path.relative_to(writer.lake.dest.root))]
        assert (record.rows, record.bytes) == (meta.num_rows, path.stat().st_size)
    assert_clean_and_complete(writer, ids)


def test_oversize_row_is_written_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = make_writer(tmp_path, max_bytes=12_000, row_group_rows=10)
    rnd = random.Random(3)
    for i in range(6):
        long_text = 40_000 if i == 2 else 5
        writer.add("issue", 0, i, SCHEMA, SCHEMA_ID, issue_row(i, rnd, long_text))
    with caplog.at_level(logging.INFO, logger="sluiceway.sink"):
        writer.close_all()
    files = read_back(writer)
    alone = [(p, m) for p, m, t in files if 2 in t.column("id").to_pylist()]
    assert len(alone) == 1 and alone[0][1].num_rows == 1
    assert any("alone exceeds max_bytes" in r.message for r in caplog.records)
    for path, _, table in files:
        if 2 not in table.column("id").to_pylist():
            assert path.stat().st_size <= 12_000
    assert_clean_and_complete(writer, list(range(6)))


def test_age_and_schema_change_rotate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    writer = make_writer(tmp_path, clock, max_age_s=5.0, row_group_rows=1000)
    rnd = random.Random(5)
    with caplog.at_level(logging.INFO, logger="sluiceway.sink"):
        for i in range(3):
            writer.add("issue", 0, i, SCHEMA, SCHEMA_ID, issue_row(i, rnd))
        assert writer.tick() == 0
        clock.now += 5.0
        assert writer.tick() == 1
        writer.add("issue", 0, 3, SCHEMA, SCHEMA_ID, issue_row(3, rnd))
        writer.add("issue", 0, 4, SCHEMA, "another-schema", issue_row(4, rnd))
        writer.close_all()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rotate ")]
    assert [line.split(" reason=")[1].split()[0] for line in lines] == [
        "age",
        "schema_change",
        "run_end",
    ]
    assert lines[0].startswith("rotate table=issue partition=0 start_offset=0 rows=3 bytes=")
    assert lines[0].endswith(f"file={DIRS['issue']}/part-00000-00000000000000000000.parquet")
    assert writer.open_starts() == {}
    assert_clean_and_complete(writer, list(range(5)))


def test_open_starts_and_offsets(tmp_path: Path) -> None:
    writer = make_writer(tmp_path, max_rows=4, row_group_rows=2)
    rnd = random.Random(9)
    for offset in range(10):
        writer.add("issue", 0, offset, SCHEMA, SCHEMA_ID, issue_row(offset, rnd))
    # files [0..3] and [4..7] are published, [8, 9] is the open one
    assert writer.open_starts() == {0: 8}
    assert [r.start_offset for r in writer.published] == [0, 4]
    assert [r.end_offset for r in writer.published] == [3, 7]


def test_restart_cleans_temporaries_and_skips_published_offsets(tmp_path: Path) -> None:
    writer = make_writer(tmp_path, max_rows=500, row_group_rows=100)
    feed(writer, 2_100, partitions=1)
    published_before = list(writer.published)
    table_dir = Path(writer.lake.path(DIRS["issue"]))
    assert any(p.name.startswith(".part-") for p in table_dir.iterdir())  # the open file
    writer.abort_all()  # what a crash leaves behind, minus the process
    leftover = table_dir / layout.temp_name(layout.part_name(0, 2_000), "deadbeef")
    leftover.write_bytes(b"half a file")
    restarted = make_writer(tmp_path, max_rows=500, row_group_rows=100)
    restarted.adopt(recovery.recover(restarted.lake, ETL, DIRS, range(4)))
    assert not leftover.exists()
    assert sorted(restarted.published, key=lambda r: r.start_offset) == sorted(
        published_before, key=lambda r: r.start_offset
    )
    ids = feed(restarted, 2_100, partitions=1)  # Kafka redelivers from an earlier commit
    restarted.close_all()
    assert_clean_and_complete(restarted, ids)


def test_torn_part_file_is_deleted_on_recovery(tmp_path: Path) -> None:
    lake = storage.open_lake(str(tmp_path / "lake"), _s3())
    torn = Path(lake.path(DIRS["issue"])) / layout.part_name(0, 0)
    torn.parent.mkdir(parents=True)
    torn.write_bytes(b"PAR1 and then the upload stopped")
    assert recovery.recover(lake, ETL, DIRS, range(4)) == []
    assert not torn.exists()


@pytest.mark.parametrize("rows", [1, 7, 1_000, 5_000])
@pytest.mark.parametrize("codec", ["zstd", "snappy", "gzip", "lz4", "brotli", "none"])
def test_size_bound_covers_the_encoded_file(rows: int, codec: str) -> None:
    rnd = random.Random(rows)
    buffer = ColumnBuffer(SCHEMA)
    for i in range(rows):
        buffer.append(issue_row(i, rnd, long_text=rnd.choice([0, 0, 3_000])), i)
    table, _ = buffer.drain()
    sink = pa.BufferOutputStream()
    meta = {"k": "v" * 40}
    with pq.ParquetWriter(sink, SCHEMA, compression=None if codec == "none" else codec) as w:
        w.write_table(table, row_group_size=rows)
        data = sink.tell()
        w.add_key_value_metadata(meta)
    bound = sizing.row_group_bound(table, codec)
    base = sizing.footer_base(SCHEMA, meta)
    assert data <= 4 + bound.data
    assert sink.tell() <= bound.total + base


def run_record(entities: tuple[str, ...] = ("issue", "comment")) -> RunRecord:
    return RunRecord(
        etl_id=ETL,
        type="full",
        tenants=("t1",),
        entities=entities,
        destination="/lake",
        run_topic=f"sw.run.{ETL}",
        run_partitions=2,
        start={"sw.cdc.issue": {0: 0}},
        cut={"sw.cdc.issue": {0: 42}},
        created_at="2026-11-22T01:02:03+00:00",
    )


def test_manifest_counts_match_the_files(tmp_path: Path) -> None:
    writer = make_writer(tmp_path, max_rows=300, row_group_rows=64)
    feed(writer, 1_000)
    writer.close_all()
    versions = {e: s.header[2:].hex() for e, s in CODEC.schemas.items()}
    built = manifest.build_run_manifest(
        run_record(), writer.published, versions, "2026-11-22T02:00:00+00:00"
    )
    doc = json.loads(built.to_json())  # as it lands on disk
    root = Path(writer.lake.dest.root)
    issue = doc["tables"]["issue"]
    assert issue["rows"] == 1_000 == sum(pq.read_metadata(root / f["path"]).num_rows
                                         for f in issue["files"])  # fmt: skip
    for entry in issue["files"]:
        assert entry["rows"] == pq.read_metadata(root / entry["path"]).num_rows
        assert entry["bytes"] == (root / entry["path"]).stat().st_size
    assert doc["tables"]["comment"] == {"files": [], "rows": 0, "bytes": 0}
    assert doc["totals"] == {
        "files": len(issue["files"]),
        "rows": 1_000,
        "bytes": sum(f["bytes"] for f in issue["files"]),
    }
    assert doc["schema_versions"] == {"issue": versions["issue"], "comment": versions["comment"]}
    assert doc["status"] == "complete" and doc["cut"] == {"sw.cdc.issue": {"0": 42}}


def test_manifests_are_written_and_chained(tmp_path: Path) -> None:
    lake = Lake(fs=pafs.LocalFileSystem(), dest=layout.parse_destination(str(tmp_path)))
    first = manifest.build_run_manifest(run_record(), [], {"issue": "a", "comment": "b"}, "t1")
    manifest.write_manifests(lake, first)
    second = first.model_copy(update={"etl_id": "20261123T000000Z-0001"})
    manifest.write_manifests(lake, second)
    manifest.write_manifests(lake, second)  # a restarted sink rewrites the same run
    root = reader.latest_manifest(lake)
    assert root is not None and root.previous is not None
    assert root.latest == second
    assert root.previous.etl_id == ETL
    assert reader.run_manifest(lake, ETL) == first
    manifest.publish_latest(lake, first)  # an older run never replaces a newer one
    assert reader.latest_manifest(lake) == root
    assert [p.name for p in tmp_path.rglob(".*")] == []


def test_publish_keeps_footer_metadata(tmp_path: Path) -> None:
    writer = make_writer(tmp_path, row_group_rows=10)
    feed(writer, 25, partitions=1)
    writer.close_all()
    record = writer.published[0]
    meta = pq.read_metadata(Path(writer.lake.path(record.path))).metadata
    assert meta[parquet_file.META_END.encode()] == b"%020d" % 24
    assert meta[parquet_file.META_ETL_ID.encode()] == ETL.encode()


def test_recovery_removes_manifest_temporaries_at_the_root_and_in_runs(tmp_path: Path) -> None:
    lake = storage.open_lake(str(tmp_path / "lake"), _s3())
    root = Path(lake.dest.root)
    (root / layout.RUNS_DIR).mkdir(parents=True)
    leftovers = [
        root / layout.temp_name(layout.LATEST_MANIFEST),
        root / layout.RUNS_DIR / layout.temp_name("20261122T000000Z-abcd.json"),
    ]
    keep = [root / "manifest.json", root / layout.RUNS_DIR / "20261121T000000Z-0000.json"]
    for path in leftovers + keep:
        path.write_text("{}")
    recovery.remove_manifest_temporaries(lake, "20261122T000000Z-abcd")
    assert [p.exists() for p in leftovers] == [False, False]
    assert all(p.exists() for p in keep)


def test_recovery_of_some_partitions_leaves_the_others_alone(tmp_path: Path) -> None:
    """Another live sink owns partition 1: its temporary and its files are not ours."""
    writer = make_writer(tmp_path, max_rows=500, row_group_rows=100)
    feed(writer, 2_400, partitions=2)
    table_dir = Path(writer.lake.path(DIRS["issue"]))
    theirs = table_dir / layout.temp_name(layout.part_name(1, 9_000), "cafef00d")
    ours = table_dir / layout.temp_name(layout.part_name(0, 9_000), "deadbeef")
    theirs.write_bytes(b"being written")
    ours.write_bytes(b"left by a dead sink")
    records = recovery.recover(writer.lake, ETL, DIRS, [0])
    assert not ours.exists() and theirs.exists()
    published_0 = sorted(r.path for r in writer.published if r.partition == 0)
    assert published_0 and sorted(r.path for r in records) == published_0
