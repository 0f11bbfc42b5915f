"""The run manifest and the root ``manifest.json`` (docs/architecture.md, "The lake contract").

Building them is pure; ``write_manifests`` writes them last, each atomically, so a reader
that finds a manifest may trust every file it lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sluiceway.common.runs import RunRecord
from sluiceway.lake import layout, storage
from sluiceway.lake.errors import RunStateError
from sluiceway.lake.storage import Lake

Manifest = dict[str, Any]


@dataclass(frozen=True)
class FileRecord:
    """A published file, as the manifest lists it."""

    table: str
    partition: int
    start_offset: int
    end_offset: int
    path: str  # relative to the destination root
    rows: int
    bytes: int


def _file_entry(record: FileRecord) -> dict[str, Any]:
    return {
        "path": record.path,
        "rows": record.rows,
        "bytes": record.bytes,
        "partition": record.partition,
        "start_offset": record.start_offset,
    }


def _offsets(offsets: dict[str, dict[int, int]]) -> dict[str, dict[str, int]]:
    return {t: {str(p): o for p, o in sorted(ps.items())} for t, ps in sorted(offsets.items())}


def table_summary(tables: Iterable[str], records: Iterable[FileRecord]) -> dict[str, Any]:
    """Per table its files in offset order and totals; tables without rows stay listed."""
    ordered = sorted(records, key=lambda r: (r.table, r.partition, r.start_offset))
    out: dict[str, Any] = {t: {"files": [], "rows": 0, "bytes": 0} for t in tables}
    for record in ordered:
        entry = out.setdefault(record.table, {"files": [], "rows": 0, "bytes": 0})
        entry["files"].append(_file_entry(record))
        entry["rows"] += record.rows
        entry["bytes"] += record.bytes
    return out


def build_run_manifest(
    run: RunRecord,
    records: Iterable[FileRecord],
    schema_versions: dict[str, str],
    completed_at: str,
    dead_letters: int = 0,
    full_export_date: str | None = None,
) -> Manifest:
    tables = table_summary(run.entities, records)
    # a replay says so, with its TIME; other runs' manifests keep their shape
    replay = {"replay_to": run.replay_to} if run.replay_to else {}
    return {
        **replay,
        "etl_id": run.etl_id,
        "type": run.type,
        "status": "complete",
        "spec": {
            "tenants": list(run.tenants),
            "entities": list(run.entities),
            "destination": run.destination,
            "format": run.format,
        },
        "start": _offsets(run.start),
        "cut": _offsets(run.cut),
        "started_at": run.created_at,
        "completed_at": completed_at,
        "tables": tables,
        "totals": {
            "files": sum(len(t["files"]) for t in tables.values()),
            "rows": sum(t["rows"] for t in tables.values()),
            "bytes": sum(t["bytes"] for t in tables.values()),
        },
        # what the rows are (pii rules, remap, opt-out...): delta chains and restore check it
        "policy": run.policy,
        "schema_versions": {e: schema_versions[e] for e in run.entities},
        "dead_letters": dead_letters,
        "full_export_date": full_export_date or f"{run.export_date:%Y-%m-%d}",
    }


def root_manifest(latest: Manifest, current: Manifest | None) -> Manifest:
    """The new ``manifest.json``; rewriting the same run keeps the run before it."""
    previous = (current or {}).get("latest")
    if previous is not None and previous.get("etl_id") == latest["etl_id"]:
        previous = (current or {}).get("previous")
    return {"latest": latest, "previous": previous}


def _dumps(document: Manifest) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def read_json(lake: Lake, relative: str) -> Manifest | None:
    data = storage.read_bytes(lake, relative)
    if data is None:
        return None
    try:
        document: Manifest = json.loads(data)
    except ValueError as exc:
        raise RunStateError(f"{lake.path(relative)} is not valid JSON: {exc}") from exc
    return document


def write_manifests(lake: Lake, run_manifest: Manifest) -> None:
    """Write ``_runs/<etl_id>.json``, then ``manifest.json`` unless a newer run owns it."""
    storage.write_bytes_atomic(
        lake, layout.run_manifest_path(run_manifest["etl_id"]), _dumps(run_manifest)
    )
    publish_latest(lake, run_manifest)


def publish_latest(lake: Lake, run_manifest: Manifest) -> None:
    current = read_json(lake, layout.LATEST_MANIFEST)
    latest_id = ((current or {}).get("latest") or {}).get("etl_id", "")
    if latest_id > run_manifest["etl_id"]:
        return  # a later run completed meanwhile; never move the lake backwards
    storage.write_bytes_atomic(
        lake, layout.LATEST_MANIFEST, _dumps(root_manifest(run_manifest, current))
    )
