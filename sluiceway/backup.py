"""Reading a backup: the latest full export of a lake (a replay or any full run), by manifest.

Only files a complete run manifest lists are read: a reader that sees a manifest may trust
every file in it, and files of an unfinished run are never picked up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq

from sluiceway.errors import RestoreError
from sluiceway.settings import S3Settings

Manifest = dict[str, Any]
Row = dict[str, Any]


def open_backup(root: str, s3: S3Settings) -> tuple[Any, Manifest]:
    """The lake at ``root`` and the manifest of its newest complete full export."""
    from sinks.layout import RUNS_DIR
    from sinks.storage import list_names, open_lake, read_bytes

    lake = open_lake(root, s3)
    names = sorted((i.base_name for i in list_names(lake, RUNS_DIR)), reverse=True)
    for name in names:  # etl_ids sort by start time: newest first
        if not name.endswith(".json") or name.startswith("."):
            continue
        manifest: Manifest = json.loads(read_bytes(lake, f"{RUNS_DIR}/{name}") or b"{}")
        if manifest.get("type") == "full" and manifest.get("status") == "complete":
            return lake, manifest
    raise RestoreError(
        f"{root} holds no complete full export (no _runs/<etl_id>.json of type full); "
        "expected a destination of sluiceway replay or export start --type full"
    )


def check_backup(manifest: Manifest, tenants: tuple[str, ...]) -> tuple[str, ...]:
    """The tenants to restore: those asked for, which the backup must hold; else all of it."""
    held = tuple(manifest["spec"]["tenants"])
    if manifest["spec"].get("format", "parquet") != "parquet":
        raise RestoreError(
            f"run {manifest['etl_id']} was written as {manifest['spec']['format']}; "
            "restore reads parquet backups"
        )
    missing = [t for t in tenants if t not in held]
    if missing:
        raise RestoreError(
            f"backup {manifest['etl_id']} holds tenants {', '.join(held)}, not {', '.join(missing)}"
        )
    return tenants or held


def table_rows(
    lake: Any, manifest: Manifest, table: str, tenants: tuple[str, ...]
) -> Iterator[Row]:
    """The table's rows of ``tenants``, in batches: memory stays bounded whatever the file size."""
    for entry in manifest["tables"].get(table, {}).get("files", []):
        with lake.fs.open_input_file(lake.path(entry["path"])) as src:
            for batch in pq.ParquetFile(src).iter_batches(batch_size=10_000):
                yield from (r for r in batch.to_pylist() if r["_tenant_id"] in tenants)
