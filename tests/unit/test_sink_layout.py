"""Lake paths and destination checks."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import S3Settings
from sluiceway.lake import layout, storage
from sluiceway.lake.errors import DestinationError

ETL = "20261122T010203Z-ab12"


def test_full_export_path() -> None:
    day = datetime(2026, 1, 2, 23, 59, tzinfo=UTC)
    directory = layout.full_table_dir(day, "issue", ETL)
    name = layout.part_name(3, 123)
    assert f"{directory}/{name}" == (
        f"2026/01/02/daily-export/full-export/issue/{ETL}/part-00003-00000000000000000123.parquet"
    )


def test_delta_export_path_has_both_dates() -> None:
    directory = layout.delta_table_dir(date(2026, 1, 2), date(2026, 2, 9), "comment", ETL)
    assert directory == f"2026/01/02/daily-export/delta-export/2026/02/09/comment/{ETL}"


def test_part_names_are_zero_padded_and_parse_back() -> None:
    assert layout.part_name(0, 0) == "part-00000-00000000000000000000.parquet"
    assert layout.part_name(12345, 2**40) == "part-12345-00000001099511627776.parquet"
    assert layout.parse_part_name(layout.part_name(7, 99)) == (7, 99)
    assert layout.parse_part_name("part-7-99.parquet") is None
    with pytest.raises(ValueError):
        layout.part_name(-1, 0)


def test_temp_names_are_hidden_and_recognised() -> None:
    tmp = layout.temp_name(layout.part_name(1, 2))
    assert tmp.startswith(".part-00001-") and layout.is_temp_name(tmp)
    assert not layout.is_temp_name(layout.part_name(1, 2))
    assert layout.run_manifest_path(ETL) == f"_runs/{ETL}.json"


def test_local_destinations_resolve_to_absolute(tmp_path: Path) -> None:
    assert layout.parse_destination(str(tmp_path)).root == str(tmp_path.resolve())
    relative = layout.parse_destination("lake/x", cwd=tmp_path)
    assert relative.kind == "local" and relative.root == str(tmp_path.resolve() / "lake/x")
    assert layout.parse_destination(f"file://{tmp_path}/a/../b").root == str(tmp_path / "b")


def test_s3_destinations() -> None:
    dest = layout.parse_destination("s3://bucket/some/prefix/")
    assert (dest.kind, dest.root) == ("s3", "bucket/some/prefix")
    assert dest.join("_runs/x.json") == "bucket/some/prefix/_runs/x.json"
    assert layout.parse_destination("s3://bucket").root == "bucket"


@pytest.mark.parametrize("bad", ["", "   ", "s3://", "s3:///prefix", "gs://b/p", "/"])
def test_bad_destinations_are_rejected(bad: str) -> None:
    with pytest.raises(DestinationError):
        layout.parse_destination(bad)


def test_unwritable_destination_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    target = blocker / "lake"
    with pytest.raises(ConfigError) as err:
        storage.open_lake(str(target), S3Settings())
    message = str(err.value)
    assert str(target) in message and "not writable" in message and "\n" not in message


def test_writable_destination_is_created_and_left_clean(tmp_path: Path) -> None:
    lake = storage.open_lake(str(tmp_path / "new" / "lake"), S3Settings())
    assert lake.local and Path(lake.dest.root).is_dir()
    assert list(Path(lake.dest.root).iterdir()) == []
