"""The Data pipeline layout: one CSV file per entity per job, named as Data pipeline names it.

``<job folder>/<entity>s_job<job_id>_<schema version>_<timestamp>.csv``, where the job
folder is the run's destination (``<export path>/<job_id>``) and the timestamp the run's
start (from its etl_id, so a re-assembly after a crash writes the same name). The sinks
write and publish part files as for any CSV run, which keeps their crash recovery; when the
run ends, the finishing sink joins each table's parts (in offset order, headers dropped)
into the table's one file, writes it atomically, notes the joined files, deletes the parts
and only then writes the manifest: a client that sees the job complete finds its files and
nothing else. A crash after the note resumes from it (the parts may be gone by then). A
table without rows still gets its file: the header alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterable

import pyarrow as pa
from pyarrow import fs as pafs

from sluiceway.common.schema_versions import columns_of, latest_version
from sluiceway.common.spec import RunSpec
from sluiceway.lake import layout, storage
from sluiceway.lake.errors import LakeWriteError
from sluiceway.lake.storage import Lake
from sluiceway.sinks import csv_file
from sluiceway.sinks.parquet_file import FileRecord

LAYOUT = "datapipeline"
# Ids are unique per tenant only, so every file says which tenant a row belongs to (Data
# pipeline's files carry the instance's URL for the same reason).
TENANT_COLUMN = "_tenant_id"
_CHUNK = 1024 * 1024


def file_columns(spec: RunSpec) -> dict[str, tuple[str, ...]]:
    """table -> the columns of its file: the schema version's, as far as the spec keeps them."""
    version = spec.schema_version or latest_version()
    return {
        e: (*(c for c in columns_of(version, e) if c in spec.columns(e)), TENANT_COLUMN)
        for e in spec.entities
    }


def file_name(table: str, job_id: int, version: int, etl_id: str) -> str:
    return f"{table}s_job{job_id}_{version}_{etl_id[:16]}.csv"


def join_once(
    lake: Lake,
    spec: RunSpec,
    etl_id: str,
    table_dirs: Iterable[str],
    parts: Callable[[], list[FileRecord]],
    line_break: str | None,
) -> list[FileRecord]:
    """The run's joined files: noted by an earlier attempt, else joined from ``parts()``
    and noted; either way the parts are deleted before the caller writes the manifest."""
    note = layout.joined_note_path(etl_id)
    noted = storage.read_bytes(lake, note)
    if noted is not None:
        joined = [FileRecord(**entry) for entry in json.loads(noted)]
    else:
        joined = assemble(lake, spec, etl_id, parts(), line_break)
        as_json = json.dumps([dataclasses.asdict(r) for r in joined]).encode()
        storage.write_bytes_atomic(lake, note, as_json)
    remove_parts(lake, etl_id, table_dirs)
    return joined


def forget_joined(lake: Lake, etl_id: str) -> None:
    """Delete the joined files' note once the manifest lists them."""
    with contextlib.suppress(OSError, FileNotFoundError):
        lake.fs.delete_file(lake.path(layout.joined_note_path(etl_id)))


def assemble(
    lake: Lake, spec: RunSpec, etl_id: str, parts: list[FileRecord], line_break: str | None
) -> list[FileRecord]:
    """Write each table's one file from its published parts; the records of those files."""
    columns = file_columns(spec)
    job_id, version = spec.job_id or 1, spec.schema_version or latest_version()
    out = []
    for table in spec.entities:
        mine = sorted((p for p in parts if p.table == table),
                      key=lambda p: (p.partition, p.start_offset))  # fmt: skip
        name = file_name(table, job_id, version, etl_id)
        head = pa.schema([(c, pa.string()) for c in columns[table]])
        size = _join(lake, name, csv_file.header(head, line_break), mine)
        end = max((p.end_offset for p in mine), default=-1)
        rows = sum(p.rows for p in mine)
        out.append(FileRecord(table, 0, 0, end, name, rows, size))
    return out


def _join(lake: Lake, name: str, header: bytes, parts: Iterable[FileRecord]) -> int:
    target = storage.write_target(lake, name)
    try:
        with lake.fs.open_output_stream(target, compression=None) as out:
            out.write(header)
            size = len(header)
            for part in parts:
                size += _copy_rows(lake, part.path, out)
    except (OSError, pa.ArrowException) as exc:
        storage.discard(lake, target)
        raise LakeWriteError(f"cannot write {lake.path(name)}: {exc}") from exc
    storage.commit_target(lake, target, name)
    return size


def _copy_rows(lake: Lake, relative: str, out: pa.NativeFile) -> int:
    """Append a part's records (everything after its header line); bytes appended."""
    copied = 0
    with lake.fs.open_input_stream(lake.path(relative), compression=None) as src:
        first = src.read(_CHUNK)
        # the header is plain names, quoted: its first CRLF ends it
        chunk = first[first.index(b"\r\n") + 2 :] if b"\r\n" in first else b""
        while chunk:
            out.write(chunk)
            copied += len(chunk)
            chunk = src.read(_CHUNK)
    return copied


def remove_parts(lake: Lake, etl_id: str, table_dirs: Iterable[str]) -> None:
    """Delete the run's part files, their notes and the folders left empty; the joined
    files are noted by now, so nothing here is needed again."""
    for directory in table_dirs:
        with contextlib.suppress(OSError, FileNotFoundError):
            lake.fs.delete_dir(lake.path(directory))
        _prune(lake, layout.parent(directory))
    with contextlib.suppress(OSError, FileNotFoundError):
        lake.fs.delete_dir(lake.path(f"{layout.RUNS_DIR}/{etl_id}.parts"))


def _prune(lake: Lake, directory: str) -> None:
    """Remove ``directory`` and its parents while they are empty (object stores have none)."""
    while directory and lake.local:
        try:
            found = lake.fs.get_file_info(pafs.FileSelector(lake.path(directory)))
        except (OSError, FileNotFoundError):
            found = []
        if found:
            return
        with contextlib.suppress(OSError, FileNotFoundError):
            lake.fs.delete_dir(lake.path(directory))
        directory = layout.parent(directory)
