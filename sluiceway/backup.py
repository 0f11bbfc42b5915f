"""Reading a backup: the latest full export of a lake (a replay or any full run), by manifest.

Only files a complete run manifest lists are read: a reader that sees a manifest may trust
every file in it, and files of an unfinished run are never picked up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sluiceway.errors import RestoreError
from sluiceway.settings import S3Settings

Manifest = dict[str, Any]
Row = dict[str, Any]


def open_backup(root: str, s3: S3Settings) -> tuple[Any, Manifest]:
    """The lake at ``root`` and the manifest of its newest complete full export."""
    from pyarrow.fs import LocalFileSystem

    from sinks.layout import RUNS_DIR, parse_destination
    from sinks.storage import Lake, list_names, read_bytes, s3_filesystem

    # not open_lake: its write probe would create a missing directory, and a backup is read-only
    dest = parse_destination(root)
    lake = Lake(s3_filesystem(s3) if dest.kind == "s3" else LocalFileSystem(), dest)
    try:
        names = sorted((i.base_name for i in list_names(lake, RUNS_DIR)), reverse=True)
        for name in names:  # etl_ids sort by start time: newest first
            if not name.endswith(".json") or name.startswith("."):
                continue
            manifest: Manifest = json.loads(read_bytes(lake, f"{RUNS_DIR}/{name}") or b"{}")
            if manifest.get("type") == "full" and manifest.get("status") == "complete":
                return lake, manifest
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise RestoreError(
            f"cannot read the backup at {root}: {' '.join(str(exc).split())}"
        ) from exc
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
