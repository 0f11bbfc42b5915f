"""Hand-made run manifests for tests, complete as the sink writes them.

A test states only what it is about (ids, offsets, files, policy); ``complete_manifest`` fills
every other field the typed model requires with what a sink would have written.
"""

from __future__ import annotations

import copy
from typing import Any

from sluiceway.common.runs import etl_id_time
from sluiceway.lake.manifest import RootManifest, RunManifest

STARTED = "2026-11-22T10:00:00+00:00"


def complete_manifest(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the fields it leaves out filled in; what it has is kept as it is."""
    doc = copy.deepcopy(document)
    tables: dict[str, Any] = doc.setdefault("tables", {})
    for entry in tables.values():
        files = entry.setdefault("files", [])
        for index, listed in enumerate(files):
            listed.setdefault("rows", 0)
            listed.setdefault("bytes", 1)
            listed.setdefault("partition", 0)
            listed.setdefault("start_offset", index)
        entry.setdefault("rows", sum(f["rows"] for f in files))
        entry.setdefault("bytes", sum(f["bytes"] for f in files))
    spec = doc.setdefault("spec", {})
    spec.setdefault("tenants", ["t1"])
    spec.setdefault("entities", sorted(tables))
    spec.setdefault("destination", "/lake")
    spec.setdefault("format", "parquet")
    doc.setdefault("type", "full")
    doc.setdefault("status", "complete")
    doc.setdefault("start", {})
    doc.setdefault("cut", {})
    doc.setdefault("started_at", STARTED)
    doc.setdefault("completed_at", STARTED)
    doc.setdefault("totals", {
        "files": sum(len(t["files"]) for t in tables.values()),
        "rows": sum(t["rows"] for t in tables.values()),
        "bytes": sum(t["bytes"] for t in tables.values()),
    })  # fmt: skip
    doc.setdefault("schema_versions", {e: "v1" for e in spec["entities"]})
    doc.setdefault("dead_letters", 0)
    doc.setdefault("full_export_date", f"{etl_id_time(doc['etl_id']):%Y-%m-%d}")
    return doc


def run_manifest(document: dict[str, Any]) -> RunManifest:
    return RunManifest.model_validate(complete_manifest(document))


def root_manifest(latest: str, previous: str | None = None) -> RootManifest:
    """A ``manifest.json`` naming these runs."""
    before = run_manifest({"etl_id": previous}) if previous else None
    return RootManifest(latest=run_manifest({"etl_id": latest}), previous=before)
