"""What a previous attempt of the same run left in the lake. I/O.

Temporaries are deleted; published files are read back (Parquet: footer only; CSV: the
note ``csv_file.publish`` leaves under ``_runs/``) so their offsets are skipped instead of
written twice. A part file without our footer metadata (or a CSV file without a matching
note) is a torn object from an interrupted upload and is deleted so it can be rewritten.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from sluiceway.lake import layout, storage
from sluiceway.lake.manifest import FileRecord
from sluiceway.lake.storage import Lake
from sluiceway.sinks import formats

log = logging.getLogger("sluiceway.sink")


def recover(
    lake: Lake, etl_id: str, table_dirs: dict[str, str], partitions: Collection[int]
) -> list[FileRecord]:
    """Clean what earlier owners of ``partitions`` left half-written and return the files
    they published. Other partitions may belong to live sinks: their files are left alone."""
    for partition in sorted(partitions):
        prefix = f".part-{partition:05d}-"  # temp_name of every part file of the partition
        storage.remove_temporaries(lake, list(table_dirs.values()), prefix=prefix)
    records = published(lake, etl_id, table_dirs, partitions)
    if records:
        log.info(
            "resuming partitions %s: %d files published before", sorted(partitions), len(records)
        )
    return records


def remove_manifest_temporaries(lake: Lake, etl_id: str) -> None:
    """Leftovers of a sink that died writing the manifests (only one sink writes them)."""
    manifest_tmp = layout.temp_prefix(layout.basename(layout.run_manifest_path(etl_id)))
    storage.remove_temporaries(lake, [layout.RUNS_DIR], prefix=manifest_tmp)
    # manifest.json is replaced atomically at the root too; a crash can leave its temporary
    latest_tmp = layout.temp_prefix(layout.LATEST_MANIFEST)
    storage.remove_temporaries(lake, [""], prefix=latest_tmp)


def published(
    lake: Lake, etl_id: str, table_dirs: dict[str, str], partitions: Collection[int] | None = None
) -> list[FileRecord]:
    """The run's part files in the lake (of ``partitions``; None: all), read back; torn
    ones are deleted."""
    records: list[FileRecord] = []
    for table, directory in sorted(table_dirs.items()):
        for info in storage.list_names(lake, directory):
            named = layout.parse_part_name(info.base_name)
            if named is None or (partitions is not None and named[0] not in partitions):
                continue
            relative = f"{directory}/{info.base_name}"
            kind = formats.by_extension(info.base_name)
            record = kind.read_record(lake, etl_id, table, relative, info.size or 0)
            if record is None or record.table != table:
                log.warning("deleting unreadable part file %s", info.path)
                lake.fs.delete_file(info.path)
                kind.forget(lake, etl_id, table, relative)
                continue
            records.append(record)
    return records
