"""The Data pipeline layout: spec checks, file names, and joining parts into one file."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sluiceway.common.schema_versions import columns_of
from sluiceway.common.settings import S3Settings
from sluiceway.common.spec import parse_spec
from sluiceway.common.spec_errors import SpecError
from sluiceway.lake import storage
from sluiceway.sinks import dp_layout
from sluiceway.sinks.parquet_file import FileRecord
from tests.catalogs import ENTITIES

ETL = "20261205T081332Z-ab12"


def spec_data(**extra: object) -> dict[str, object]:
    return {"tenants": ["t1"], "destination": "/x/3", "format": "csv",
            "layout": "datapipeline", "job_id": 3, **extra}  # fmt: skip


def test_the_layout_needs_csv_and_a_job_id() -> None:
    assert parse_spec(spec_data()).layout == "datapipeline"
    for bad, field in (({"format": "parquet"}, "format csv"), ({"job_id": None}, "job_id"),
                       ({"schema_version": 9}, "9")):  # fmt: skip
        with pytest.raises(SpecError, match=field):
            parse_spec(spec_data(**bad))
    assert parse_spec({"tenants": ["t1"], "destination": "/x"}).layout == "lake"


def test_files_have_the_version_columns_and_the_tenant() -> None:
    spec = parse_spec(spec_data(schema_version=1))
    columns = dp_layout.file_columns(spec)
    assert columns["issue"] == (*columns_of(1, "issue"), "_tenant_id")
    assert dp_layout.file_name("issue", 3, 1, ETL) == "issues_job3_1_20261205T081332Z.csv"


def test_parts_join_in_offset_order_and_empty_tables_keep_their_header(tmp_path: Path) -> None:
    lake = storage.open_lake(str(tmp_path / "3"), S3Settings())
    spec = parse_spec(spec_data(schema_version=1))
    header = '"id","_tenant_id"\r\n'
    parts = []
    for partition, start, body in ((1, 0, '"3","t1"\r\n'), (0, 5, '"2","t1"\r\n'),
                                   (0, 0, '"1","a\\\\b"\r\n"9","t1"\r\n')):  # fmt: skip
        path = f"d/issue/part-{partition}-{start}.csv"
        storage.ensure_dir(lake, "d/issue")
        storage.write_bytes_atomic(lake, path, (header + body).encode())
        parts.append(FileRecord("issue", partition, start, start, path, body.count("\r\n"), 0))
    records = dp_layout.assemble(lake, spec, ETL, parts, "\\n")
    assert [r.path for r in records] == [dp_layout.file_name(e, 3, 1, ETL) for e in ENTITIES]
    issue = tmp_path / "3" / dp_layout.file_name("issue", 3, 1, ETL)
    with issue.open(newline="", encoding="utf-8") as handle:
        head, *rows = list(csv.reader(handle))
    assert head == [*columns_of(1, "issue"), "_tenant_id"]
    assert [r[0] for r in rows] == ["1", "9", "2", "3"] and rows[0][1] == "a\\\\b"
    assert {r.path: (r.rows, r.bytes) for r in records}[issue.name] == (4, issue.stat().st_size)
    user = tmp_path / "3" / dp_layout.file_name("user", 3, 1, ETL)
    assert user.read_bytes().count(b"\r\n") == 1  # the header alone
    dp_layout.remove_parts(lake, ETL, ["d/issue"])
    assert not (tmp_path / "3" / "d").exists()


def test_a_join_is_noted_before_its_parts_go_and_a_second_attempt_resumes_from_the_note(
    tmp_path: Path,
) -> None:
    lake = storage.open_lake(str(tmp_path / "3"), S3Settings())
    spec = parse_spec(spec_data(schema_version=1))
    storage.ensure_dir(lake, "d/issue")
    storage.write_bytes_atomic(lake, "d/issue/part-0-0.csv", b'"id"\r\n"1"\r\n"2"\r\n')
    parts = [FileRecord("issue", 0, 0, 1, "d/issue/part-0-0.csv", 2, 0)]
    first = dp_layout.join_once(lake, spec, ETL, ["d/issue"], lambda: parts, None)
    assert not (tmp_path / "3" / "d").exists()  # the parts went before any manifest
    assert (tmp_path / "3" / "_runs" / f"{ETL}.joined.json").exists()

    def gone() -> list[FileRecord]:
        raise AssertionError("the parts were read again after the join was noted")

    # a sink that died after the note: its parts are gone, the note answers
    again = dp_layout.join_once(lake, spec, ETL, ["d/issue"], gone, None)
    assert again == first and {r.rows for r in again if r.table == "issue"} == {2}
    dp_layout.forget_joined(lake, ETL)
    assert not (tmp_path / "3" / "_runs" / f"{ETL}.joined.json").exists()
