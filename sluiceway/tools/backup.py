"""Reading a backup: the latest full export of a lake (a replay or any full run), by manifest.

Only files a complete run manifest lists are read: a reader that sees a manifest may trust
every file in it, and files of an unfinished run are never picked up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sluiceway.common.errors import RestoreError
from sluiceway.common.settings import S3Settings
from sluiceway.lake import reader
from sluiceway.lake.errors import RunStateError
from sluiceway.lake.layout import listed_path
from sluiceway.lake.manifest import RunManifest
from sluiceway.lake.storage import Lake

Row = dict[str, Any]


def open_backup(root: str, s3: S3Settings) -> tuple[Lake, RunManifest]:
    """The lake at ``root`` and the manifest of its newest complete full export."""
    try:
        lake = reader.open_readonly(root, s3)  # a backup is read-only: nothing is created
        for _, manifest in reader.run_manifests(lake):
            if manifest.type == "full" and manifest.status == "complete":
                return lake, manifest
    except (OSError, ValueError, RunStateError, pa.ArrowException) as exc:
        raise RestoreError(
            f"cannot read the backup at {root}: {' '.join(str(exc).split())}"
        ) from exc
    raise RestoreError(
        f"{root} holds no complete full export (no _runs/<etl_id>.json of type full); "
        "expected a destination of sluiceway replay or export start --type full"
    )


def check_backup(
    manifest: RunManifest, tenants: tuple[str, ...], as_tenant: str | None = None
) -> tuple[str, ...]:
    """The tenants to restore, as their rows carry them: those asked for, which the backup
    must hold; else all of it. Refuses what would load something else than the source's data."""
    etl_id = manifest.etl_id
    if manifest.spec.format != "parquet":
        raise RestoreError(
            f"run {etl_id} was written as {manifest.spec.format}; restore reads parquet backups"
        )
    for listed in manifest.paths():  # before anything is read or written
        listed_path(listed, f"run {etl_id}'s manifest")
    check_policy(manifest)
    held = row_tenants(manifest)
    remap = (manifest.policy or {}).get("remap")
    if remap and as_tenant != remap["tenant"]:
        raise RestoreError(
            f"backup {etl_id} holds tenant {manifest.spec.tenants[0]}'s rows remapped to "
            f"tenant {remap['tenant']} (ids + {remap.get('id_offset', 0)}); restore them only "
            f"as that tenant, explicitly: pass --as-tenant {remap['tenant']}"
        )
    if as_tenant is not None and not remap:
        raise RestoreError(
            f"--as-tenant {as_tenant} restores a remapped backup; backup {etl_id} is not "
            "remapped: its rows carry their own tenants"
        )
    missing = [t for t in tenants if t not in held]
    if missing:
        raise RestoreError(
            f"backup {etl_id} holds tenants {', '.join(held)}, not {', '.join(missing)}"
        )
    return tenants or held


def check_policy(manifest: RunManifest) -> None:
    """Redacted rows are not data: a hash or a mask restored would overwrite the real value."""
    rules = (manifest.policy or {}).get("pii") or {}
    if rules:
        shown = ", ".join(f"{target}: {rule}" for target, rule in sorted(rules.items()))
        raise RestoreError(
            f"backup {manifest.etl_id} is redacted ({shown}); restoring it would load hashes, "
            "masks or nothing in place of the data: restore from an export without pii rules"
        )


def check_partial(manifest: RunManifest, replace: bool) -> None:
    """--replace deletes a tenant's rows: only a backup of all of them may take their place."""
    policy = manifest.policy or {}
    partial = {k: policy[k] for k in ("from_date", "opt_out") if policy.get(k)}
    if replace and partial:
        shown = ", ".join(f"{k} {v!r}" for k, v in partial.items())
        raise RestoreError(
            f"backup {manifest.etl_id} holds only part of its tenants' rows ({shown}); "
            "--replace would delete the rest: restore without --replace into an empty database"
        )


def row_tenants(manifest: RunManifest) -> tuple[str, ...]:
    """The tenants a backup's rows carry: a remapped run's rows carry the target tenant."""
    remap = (manifest.policy or {}).get("remap")
    return (str(remap["tenant"]),) if remap else tuple(manifest.spec.tenants)


def table_rows(
    lake: Lake, manifest: RunManifest, table: str, tenants: tuple[str, ...],
    carried: tuple[str, ...] | None = None,
) -> Iterator[Row]:  # fmt: skip
    """The table's rows of ``tenants``, in batches: memory stays bounded whatever the file size.

    With ``carried`` (the tenants the manifest says its rows carry) a row of any other tenant
    is refused: the manifest does not describe its files."""
    etl_id = manifest.etl_id
    entry = manifest.tables.get(table)
    paths = [lake.listed(f.path, f"run {etl_id}'s manifest") for f in entry.files] if entry else []
    names = _all_columns(lake, paths)
    for path in paths:
        with lake.fs.open_input_file(path) as src:
            for batch in pq.ParquetFile(src).iter_batches(batch_size=10_000):
                rows = batch.to_pylist()
                if len(batch.schema) < len(names):
                    rows = [{**dict.fromkeys(names), **r} for r in rows]
                if carried is not None:
                    _check_carried({r["_tenant_id"] for r in rows}, carried, path, etl_id)
                yield from (r for r in rows if r["_tenant_id"] in tenants)


def _all_columns(lake: Lake, paths: list[str]) -> list[str]:
    """Every column of any of the files: files written before and after a change of the
    source table (a schema version) differ, and a row lacks what its file lacks (NULL)."""
    if len(paths) < 2:
        return []
    names: dict[str, None] = {}
    for path in paths:
        with lake.fs.open_input_file(path) as src:
            names.update(dict.fromkeys(pq.ParquetFile(src).schema_arrow.names))
    return list(names)


def _check_carried(found: set[str], carried: tuple[str, ...], path: str, etl_id: str) -> None:
    stray = sorted(found - set(carried))
    if stray:
        raise RestoreError(
            f"file {path} holds rows of tenant {stray[0]!r}, but run {etl_id}'s manifest says "
            f"its rows carry {', '.join(carried)}; refusing files that are not what their "
            "manifest says"
        )
