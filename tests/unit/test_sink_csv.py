"""CSV files in Data pipeline's format: bytes on disk, round trips, exact caps, restarts."""

from __future__ import annotations

import csv
import io
import logging
import random
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from pydantic import ValidationError

from sluiceway.common.settings import S3Settings
from sluiceway.lake import layout, manifest, storage
from sluiceway.lake.errors import RunStateError
from sluiceway.sinks import csv_file, plan, recovery
from sluiceway.sinks.config import SinkSettings
from sluiceway.sinks.writer import RunWriter
from tests.unit.test_sink_writer import (
    CODEC,
    DIRS,
    ETL,
    SCHEMA,
    SCHEMA_ID,
    FakeClock,
    issue_row,
    run_record,
)

TRICKY = [
    'He said "ship it", then left.',
    "Commas, commas, and more commas",
    "Ünïcödé: café, naïve, 日本語, Ελληνικά, emoji 🚀",
    "Path C:\\temp\\new and a tab\there",
    "Line one\nLine two\r\nLine three",
    "trailing backslash \\",
    'only "quotes" and \\n typed as text',
    "\r\n",
    "",
    "  spaces kept  ",
]


def make_writer(tmp_path: Path, escape: bool = True, **caps: Any) -> RunWriter:
    lake = storage.open_lake(str(tmp_path / "lake"), S3Settings())
    settings = SinkSettings(csv_escape_newlines=escape, **caps)
    return RunWriter(lake, ETL, settings, FakeClock(), DIRS, file_format="csv")


def tricky_row(i: int) -> dict[str, Any]:
    row = issue_row(i, random.Random(i))
    row["description"] = TRICKY[i % len(TRICKY)] if i % (len(TRICKY) + 1) else None
    row["summary"] = f'S{i}, "{TRICKY[(i + 3) % len(TRICKY)]}"'
    return row


def feed(writer: RunWriter, count: int, partitions: int = 1) -> list[dict[str, Any]]:
    rows = [tricky_row(i) for i in range(count)]
    for i, row in enumerate(rows):
        writer.add("issue", i % partitions, i // partitions, SCHEMA, SCHEMA_ID, row)
    return rows


def csv_paths(writer: RunWriter) -> list[Path]:
    root = Path(writer.lake.path(DIRS["issue"]))
    return sorted(root.glob("part-*.csv"))


def python_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as src:
        return list(csv.DictReader(src, strict=True))


def query(text: str) -> duckdb.DuckDBPyRelation:
    relation = duckdb.sql(text)
    assert relation is not None  # None only for statements that return nothing
    return relation


def duckdb_rows(path: Path) -> list[dict[str, str | None]]:
    relation = query(
        f"SELECT * FROM read_csv('{path}', header=true, all_varchar=true, "
        "delim=',', quote='\"', escape='\"', allow_quoted_nulls=false)"
    )
    names = relation.columns
    return [dict(zip(names, values, strict=True)) for values in relation.fetchall()]


def as_written(text: str | None, escape: bool) -> str | None:
    """What a reader gets back: line breaks as \\n when escaped, everything else as it is."""
    return None if text is None else csv_file.escape_line_breaks(text, "\\n" if escape else None)


def test_bytes_on_disk_follow_data_pipeline(tmp_path: Path) -> None:
    writer = make_writer(tmp_path)
    row = tricky_row(4)  # "Line one\nLine two\r\nLine three"
    row.update(environment="", reporter_id=None, labels='a "b", c')
    writer.add("issue", 0, 0, SCHEMA, SCHEMA_ID, row)
    writer.close_all()
    [path] = csv_paths(writer)
    raw = path.read_bytes()
    head, record, rest = raw.split(b"\r\n")
    assert head == b",".join(b'"%s"' % n.encode() for n in SCHEMA.names)
    assert rest == b""  # CRLF after the last record too, no bare CR or LF anywhere
    assert raw.count(b"\n") == raw.count(b"\r") == raw.count(b"\r\n") == 2
    text = record.decode()
    assert '"Line one\\nLine two\\nLine three"' in text  # CRLF is one line break
    assert ',"",' in text  # empty string: quoted
    assert ",," in text  # null: empty and unquoted
    assert '"a ""b"", c"' in text
    assert '"2026-01-01T00:00:04.000000Z"' in text  # created, and _source_ts
    assert '"2026-05-01"' in text and '"false"' in text and f'"{ETL}"' in text
    fields = next(csv.reader([text]))
    assert fields[SCHEMA.names.index("story_points")] == repr(row["story_points"])


def test_formatters() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert csv_file.timestamp_text(moment) == "2026-01-02T03:04:05.123456Z"
    assert csv_file.timestamp_text(1_767_323_045_123_456) == "2026-01-02T03:04:05.123456Z"
    assert csv_file.timestamp_text(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000000Z"
    assert csv_file.date_text(date(33, 2, 1)) == "0033-02-01"
    assert csv_file.date_text(1) == "1970-01-02"
    for text in TRICKY:
        escaped = csv_file.quote(text, "\\n")
        assert "\n" not in escaped and "\r" not in escaped
        assert escaped[1:-1].replace('""', '"') == as_written(text, escape=True)


def test_text_forms_of_every_mapped_type() -> None:
    """docs/guide.md's CSV text forms: no Z on a timestamp without time zone, times with
    microseconds, decimals with every digit of their scale, arrays as JSON arrays."""
    fmt = csv_file.formatter
    assert fmt(pa.timestamp("us"))(datetime(1901, 2, 3, 4, 5, 6, 7)) == "1901-02-03T04:05:06.000007"
    assert fmt(pa.time64("us"))(time(1, 2, 3)) == "01:02:03.000000"
    assert fmt(pa.decimal128(12, 6))(Decimal("-0.000100")) == "-0.000100"
    assert fmt(pa.decimal128(12, 0))(Decimal("1E+3")) == "1000"
    assert fmt(pa.list_(pa.string()))(['a,"b', None]) == '["a,\\"b",null]'
    assert fmt(pa.list_(pa.int32()))([1, None]) == "[1,null]"
    assert fmt(pa.list_(pa.float64()))([float("nan"), 0.1]) == '["nan","0.1"]'
    assert fmt(pa.list_(pa.date32()))([date(1969, 12, 31)]) == '["1969-12-31"]'
    assert fmt(pa.binary())(b"\x00\xff") == "AP8="


def test_backslashes_are_written_as_they_are() -> None:
    # Spark's documented recipe (escape '"') and Hive's read a backslash as itself
    assert csv_file.quote("C:\\temp\\new \\n typed", "\\n") == '"C:\\temp\\new \\n typed"'
    assert csv_file.quote("trailing \\", None) == '"trailing \\"'


def test_the_line_break_escape_is_a_setting(tmp_path: Path) -> None:
    writer = make_writer(tmp_path, csv_line_break_escape=" / ", row_group_rows=7)
    writer.add("issue", 0, 0, SCHEMA, SCHEMA_ID, tricky_row(4))
    writer.close_all()
    [path] = csv_paths(writer)
    assert '"Line one / Line two / Line three"' in path.read_text(encoding="utf-8")
    for bad in ("", "a\nb", 'q"'):
        with pytest.raises(ValidationError):
            SinkSettings(csv_line_break_escape=bad)


@pytest.mark.parametrize("escape", [True, False])
def test_round_trip_through_python_csv_and_duckdb(tmp_path: Path, escape: bool) -> None:
    writer = make_writer(tmp_path, escape=escape, row_group_rows=7)
    rows = feed(writer, 60, partitions=2)
    writer.close_all()
    expected = {r["id"]: r for r in rows}
    for reader in (python_rows, duckdb_rows):
        got = [r for p in csv_paths(writer) for r in reader(p)]
        assert sorted(int(r["id"] or -1) for r in got) == sorted(expected)
        for r in got:
            source = expected[int(r["id"] or -1)]
            assert r["summary"] == as_written(source["summary"], escape)
            if reader is duckdb_rows:  # only DuckDB tells a null from an empty string
                assert r["description"] == as_written(source["description"], escape)
                assert r["environment"] is None
            else:
                assert r["description"] == as_written(source["description"] or "", escape)
            assert r["_source_ts"] == csv_file.timestamp_text(source["_source_ts"])
            assert r["_deleted"] == "false" and r["_etl_id"] == ETL


def test_duckdb_reads_the_typed_columns(tmp_path: Path) -> None:
    writer = make_writer(tmp_path)
    feed(writer, 12)
    writer.close_all()
    [path] = csv_paths(writer)
    got = query(
        f"SELECT count(*), min(created), bool_or(_deleted), max(due_date) FROM read_csv("
        f"'{path}', header=true, types={{'created': 'TIMESTAMPTZ', '_deleted': 'BOOLEAN', "
        "'due_date': 'DATE'})"
    ).fetchall()[0]
    assert got[0] == 12 and got[1].astimezone(UTC) == datetime(2026, 1, 1, tzinfo=UTC)
    assert got[2] is False and got[3] == date(2026, 5, 1)


@pytest.mark.parametrize("spare", [0, 1, 57, 400])
def test_byte_cap_is_exact(tmp_path: Path, spare: int) -> None:
    head = len(csv_file.header(SCHEMA))
    longest = 700  # tricky rows encode to roughly 450-550 bytes
    cap = head + 2 * longest + spare
    writer = make_writer(tmp_path, max_bytes=cap)
    rows = feed(writer, 80)
    writer.close_all()
    paths = csv_paths(writer)
    assert len(paths) > 10
    sizes = [p.stat().st_size for p in paths]
    assert max(sizes) <= cap
    # a file is closed only when its next record would have broken the cap
    for path, size, nxt in zip(paths, sizes, paths[1:], strict=False):
        first_of_next = len(nxt.read_bytes().split(b"\r\n")[1]) + 2
        assert size + first_of_next > cap, path.name
    assert sum(len(python_rows(p)) for p in paths) == len(rows)
    records = {r.path: r for r in writer.published}
    for path, size in zip(paths, sizes, strict=True):
        record = records[str(path.relative_to(writer.lake.dest.root))]
        assert (record.bytes, record.rows) == (size, len(python_rows(path)))


def test_oversize_row_is_written_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cap = len(csv_file.header(SCHEMA)) + 900
    writer = make_writer(tmp_path, max_bytes=cap)
    with caplog.at_level(logging.INFO, logger="sluiceway.sink"):
        for i in range(6):
            row = tricky_row(i)
            if i == 2:
                row["description"] = 'x, "y"\n' * 500
            writer.add("issue", 0, i, SCHEMA, SCHEMA_ID, row)
        writer.close_all()
    by_size = {p.stat().st_size: python_rows(p) for p in csv_paths(writer)}
    big = [rows for size, rows in by_size.items() if size > cap]
    assert len(big) == 1 and [r["id"] for r in big[0]] == ["2"]
    assert big[0][0]["description"] == 'x, "y"\\n' * 500  # as written: escaped
    assert any("alone exceeds max_bytes" in r.getMessage() for r in caplog.records)
    rotations = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rotate ")]
    assert len(rotations) == len(csv_paths(writer)) and all(".csv" in m for m in rotations)


def test_rows_cap_names_and_rotation_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = make_writer(tmp_path, max_rows=4)
    with caplog.at_level(logging.INFO, logger="sluiceway.sink"):
        feed(writer, 10)
        writer.close_all()
    names = [p.name for p in csv_paths(writer)]
    assert names == [layout.part_name(0, s, "csv") for s in (0, 4, 8)]
    assert names[0] == "part-00000-00000000000000000000.csv"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rotate ")]
    assert [line.split(" reason=")[1].split()[0] for line in lines] == ["rows", "rows", "run_end"]
    assert lines[0].startswith("rotate table=issue partition=0 start_offset=0 rows=4 bytes=")
    assert lines[0].endswith(f"file={DIRS['issue']}/{names[0]}")


def test_no_temporaries_and_manifest_lists_the_files(tmp_path: Path) -> None:
    writer = make_writer(tmp_path, max_rows=7)
    feed(writer, 30, partitions=3)
    writer.close_all()
    root = Path(writer.lake.dest.root)
    table_dir = root / DIRS["issue"]
    assert [p.name for p in table_dir.iterdir() if not p.name.startswith("part-")] == []
    assert [p for p in root.rglob(".*")] == []
    doc = manifest.build_run_manifest(
        run_record(), writer.published, {"issue": "a", "comment": "b"}, "2026-11-22T02:00:00Z"
    )
    issue = doc.tables["issue"]
    assert issue.rows == 30 and len(issue.files) == len(csv_paths(writer))
    for entry in issue.files:
        path = root / entry.path
        assert entry.bytes == path.stat().st_size
        assert entry.rows == len(python_rows(path))


def test_restart_cleans_up_and_skips_published_offsets(tmp_path: Path) -> None:
    writer = make_writer(tmp_path, max_rows=5)
    feed(writer, 23)
    before = sorted(writer.published, key=lambda r: r.start_offset)
    table_dir = Path(writer.lake.path(DIRS["issue"]))
    assert any(p.name.startswith(".part-") for p in table_dir.iterdir())  # the open file
    writer.abort_all()
    leftover = table_dir / layout.temp_name(layout.part_name(0, 20, "csv"), "deadbeef")
    leftover.write_bytes(b'"half","a file"\r\n')
    unnoted = table_dir / layout.part_name(0, 99, "csv")  # published, crashed before its note
    unnoted.write_bytes(b'"id"\r\n"99"\r\n')
    restarted = make_writer(tmp_path, max_rows=5)
    restarted.adopt(recovery.recover(restarted.lake, ETL, DIRS, range(4)))
    assert not leftover.exists() and not unnoted.exists()
    assert sorted(restarted.published, key=lambda r: r.start_offset) == before
    rows = feed(restarted, 30)  # Kafka redelivers from an earlier commit
    restarted.close_all()
    got = [int(r["id"]) for p in csv_paths(restarted) for r in python_rows(p)]
    assert sorted(got) == [r["id"] for r in rows]
    assert [p for p in table_dir.iterdir() if p.name.startswith(".")] == []


def test_tampered_file_is_not_adopted(tmp_path: Path) -> None:
    writer = make_writer(tmp_path, max_rows=5)
    feed(writer, 10)
    writer.close_all()
    first = Path(writer.lake.path(writer.published[0].path))
    first.write_bytes(first.read_bytes() + b'"torn"')
    records = recovery.recover(writer.lake, ETL, DIRS, range(4))
    assert [r.start_offset for r in records] == [5]
    assert not first.exists()
    note = layout.part_record_path(ETL, "issue", first.name)
    assert not Path(writer.lake.path(note)).exists()


def test_format_comes_from_the_run(tmp_path: Path) -> None:
    record = run_record(("issue",))
    csv_run = type(record)(**{**record.__dict__, "format": "csv"})
    assert plan.build_plan(csv_run, CODEC.schemas, ["t1"]).format == "csv"
    assert plan.build_plan(record, CODEC.schemas, ["t1"]).format == "parquet"
    lake = storage.open_lake(str(tmp_path), S3Settings())
    with pytest.raises(RunStateError, match="format 'xlsx'"):
        RunWriter(lake, ETL, SinkSettings(), FakeClock(), DIRS, file_format="xlsx")


def test_header_is_written_even_before_rows_are(tmp_path: Path) -> None:
    lake = storage.open_lake(str(tmp_path), S3Settings())
    caps = make_writer(tmp_path).caps
    f = csv_file.new_file("issue", 0, 0, DIRS["issue"], SCHEMA, SCHEMA_ID, ETL, caps, 0.0)
    f.stream = csv_file._open_stream(lake, f)
    f.stream.close()
    assert f.target is not None
    written = Path(f.target).read_bytes()
    assert written == csv_file.header(SCHEMA) and f.state.bytes == len(written)
    assert next(csv.reader(io.StringIO(written.decode()))) == SCHEMA.names
