"""The typed run manifest and root manifest: what the sink writes parses back to the same
bytes, manifests written before policies were recorded still parse, and a bad field is one
line naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from sluiceway.lake import layout, reader
from sluiceway.lake.errors import ManifestError, RunStateError
from sluiceway.lake.manifest import RootManifest, RunManifest
from sluiceway.lake.storage import Lake

ETL_ID = "20261122T100000Z-0123456789abcdef"
BEFORE = "20261121T100000Z-fedcba9876543210"
PART = f"2026/11/22/daily-export/full-export/issue/{ETL_ID}/part-00001-{7:020d}.parquet"


def real_manifest(etl_id: str = ETL_ID) -> dict[str, Any]:
    """A run manifest as a sink of this version writes it (a replay, so every field is there)."""
    return {
        "completed_at": "2026-11-22T10:05:00.123456+00:00",
        "cut": {"sw.cdc.issue": {"0": 10, "1": 12, "10": 3}},
        "dead_letters": 1,
        "etl_id": etl_id,
        "full_export_date": "2026-11-22",
        "policy": {
            "fields": {}, "from_date": None, "opt_out": [], "pii": {"user.email_address": "hash"},
            "pii_secret_fingerprint": "sha256:abcd", "remap": None,
        },
        "replay_to": "2026-11-22T09:00:00+00:00",
        "schema_versions": {"issue": "c0ffee", "user": "beef"},
        "spec": {"destination": "/lake", "entities": ["issue", "user"], "format": "parquet",
                 "tenants": ["tenant-001"]},
        "start": {"sw.cdc.issue": {"0": 0, "1": 0, "10": 3}},
        "started_at": "2026-11-22T10:00:00+00:00",
        "status": "complete",
        "tables": {
            "issue": {"bytes": 2048, "rows": 5, "files": [
                {"bytes": 2048, "partition": 1, "path": PART, "rows": 5, "start_offset": 7}]},
            "user": {"bytes": 0, "files": [], "rows": 0},
        },
        "totals": {"bytes": 2048, "files": 1, "rows": 5},
        "type": "full",
    }  # fmt: skip


def as_written(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def a_lake(tmp_path: Path) -> Lake:
    return Lake(fs=pafs.LocalFileSystem(), dest=layout.parse_destination(str(tmp_path)))


def test_a_real_manifest_round_trips_byte_for_byte() -> None:
    text = as_written(real_manifest())
    parsed = RunManifest.from_json(text, "_runs/x.json")
    assert parsed.to_json() == text
    assert parsed.cut == {"sw.cdc.issue": {0: 10, 1: 12, 10: 3}}  # partitions are ints
    assert parsed.tables["issue"].files[0].path == PART
    assert parsed.rows() == {"issue": 5, "user": 0}
    assert parsed.policy is not None and parsed.policy["pii"] == {"user.email_address": "hash"}


def test_a_root_manifest_round_trips_and_keeps_an_older_run_as_it_was() -> None:
    old = real_manifest(BEFORE)
    del old["policy"], old["replay_to"]
    text = as_written({"latest": real_manifest(), "previous": old})
    root = RootManifest.from_json(text, "manifest.json")
    assert root.to_json() == text
    assert root.previous is not None and root.previous.policy is None
    first = as_written({"latest": old, "previous": None})
    assert RootManifest.from_json(first, "manifest.json").to_json() == first


def test_a_manifest_written_before_policies_parses_without_one(tmp_path: Path) -> None:
    old = real_manifest()
    del old["policy"], old["replay_to"]
    (tmp_path / "_runs").mkdir()
    (tmp_path / "_runs" / f"{ETL_ID}.json").write_bytes(as_written(old))
    found = reader.run_manifest(a_lake(tmp_path), ETL_ID)
    assert found is not None and found.policy is None and found.replay_to is None
    assert b'"policy"' not in found.to_json()  # written back as it was
    assert found.to_json() == as_written(old)


@pytest.mark.parametrize(
    ("change", "field", "shown"),
    [
        (lambda d: d["tables"]["issue"]["files"][0].update(rows="five"),
         "field tables.issue.files.0.rows: Input should be a valid integer", "'five'"),
        (lambda d: d.pop("cut"), "field cut: Field required", None),
        (lambda d: d["spec"].update(tenants="tenant-001"),
         "field spec.tenants: Input should be a valid tuple", "'tenant-001'"),
    ],
)  # fmt: skip
def test_a_bad_field_is_one_line_naming_the_file_and_the_field(
    tmp_path: Path, change: Any, field: str, shown: str | None
) -> None:
    document = real_manifest()
    change(document)
    (tmp_path / "_runs").mkdir()
    path = tmp_path / "_runs" / f"{ETL_ID}.json"
    path.write_bytes(as_written(document))
    with pytest.raises(ManifestError) as err:
        reader.run_manifest(a_lake(tmp_path), ETL_ID)
    message = str(err.value)
    assert message.startswith(f"manifest {path} is invalid: {field}"), message
    assert "\n" not in message
    assert shown is None or shown in message
    assert isinstance(err.value, RunStateError)  # terminal: exit 3, no retry


def test_not_json_and_a_misnamed_manifest_are_named(tmp_path: Path) -> None:
    (tmp_path / "_runs").mkdir()
    path = tmp_path / "_runs" / f"{ETL_ID}.json"
    path.write_bytes(b'{"etl_id": "trunc')
    with pytest.raises(ManifestError, match=rf"^manifest {path} is invalid: not JSON: "):
        reader.run_manifest(a_lake(tmp_path), ETL_ID)
    path.write_bytes(as_written(real_manifest(BEFORE)))
    with pytest.raises(ManifestError, match=f"it holds the manifest of run {BEFORE}"):
        reader.run_manifest(a_lake(tmp_path), ETL_ID)
    root = tmp_path / "manifest.json"
    root.write_bytes(as_written({"latest": {"etl_id": ETL_ID}, "previous": None}))
    with pytest.raises(ManifestError, match=rf"^manifest {root} is invalid: field latest.type"):
        reader.latest_manifest(a_lake(tmp_path))
