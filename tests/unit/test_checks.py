"""sluiceway check's destination and disk checks: judged without creating anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluiceway.checks import Finding, check_destination
from sluiceway.common.settings import S3Settings


def by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {f.name.split(" ")[0]: f for f in findings}


def test_a_missing_destination_is_judged_by_its_nearest_parent(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "lake"
    found = by_name(check_destination(str(dest), S3Settings(), min_free=-1))
    assert found["destination"].ok
    assert f"would be created under {tmp_path}" in found["destination"].detail
    assert not (tmp_path / "a").exists()
    assert found["disk"].ok and "guard minimum disabled" in found["disk"].detail


def test_a_destination_below_a_file_fails_with_a_fix(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    [writable, _disk] = check_destination(str(tmp_path / "file" / "lake"), S3Settings(), -1)
    assert not writable.ok
    assert writable.line().startswith(f"FAIL destination {tmp_path / 'file' / 'lake'}: ")
    assert "is not a directory; fix: choose another path" in writable.line()


def test_free_disk_below_the_guard_fails_naming_the_setting(tmp_path: Path) -> None:
    [_, disk] = check_destination(str(tmp_path), S3Settings(), min_free=10**18)
    assert not disk.ok
    assert "guard minimum 1000000000.00 GB" in disk.detail
    assert "SLUICEWAY_SINK_MIN_FREE_BYTES" in disk.fix


def test_a_bad_destination_is_a_config_error() -> None:
    from sluiceway.lake.errors import DestinationError

    with pytest.raises(DestinationError, match="unsupported scheme"):
        check_destination("ftp://host/lake", S3Settings(), -1)
