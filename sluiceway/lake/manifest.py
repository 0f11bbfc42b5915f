"""The run manifest and the root ``manifest.json`` (docs/architecture.md, "The lake contract").

``RunManifest`` and ``RootManifest`` are the one typed model of both documents; every reader
parses through them, and ``to_json`` writes the same JSON the sink always wrote (sorted keys,
two-space indent; a field absent from a parsed manifest stays absent). Building is pure;
``write_manifests`` writes them last, each atomically, so a reader that finds a manifest may
trust every file it lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from sluiceway.common.runs import Offsets, RunRecord, etl_id_time
from sluiceway.lake import layout, storage
from sluiceway.lake.errors import ManifestError
from sluiceway.lake.storage import Lake


@dataclass(frozen=True)
class FileRecord:
    """A published file, as the sink knows it (the manifest lists it as a ``FileEntry``)."""

    table: str
    partition: int
    start_offset: int
    end_offset: int
    path: str  # relative to the destination root
    rows: int
    bytes: int


class _Document(BaseModel):
    # frozen: a manifest never changes once written; extra fields (a newer version's) are
    # kept, so rewriting the root manifest keeps them
    model_config = ConfigDict(frozen=True, extra="allow")


D = TypeVar("D", bound=_Document)


class FileEntry(_Document):
    path: str  # relative to the destination root; readers check it with layout.listed_path
    rows: int
    bytes: int
    partition: int
    start_offset: int


class TableEntry(_Document):
    files: tuple[FileEntry, ...]
    rows: int
    bytes: int


class Totals(_Document):
    files: int
    rows: int
    bytes: int


class Selection(_Document):
    """What the run selected, as its manifest records it."""

    tenants: tuple[str, ...]
    entities: tuple[str, ...]
    destination: str
    format: str


class RunManifest(_Document):
    """``_runs/<etl_id>.json``: a complete run, its offsets and every file it published."""

    etl_id: str
    type: str
    status: str
    spec: Selection
    start: Offsets
    cut: Offsets
    started_at: str
    completed_at: str
    tables: dict[str, TableEntry]
    totals: Totals
    # what the rows are (pii rules, remap, opt-out...): delta chains and restore check it;
    # None in a manifest written before policies were recorded
    policy: dict[str, Any] | None = None
    schema_versions: dict[str, str]
    dead_letters: int
    full_export_date: str
    replay_to: str | None = None  # only a replay's manifest has it

    @classmethod
    def from_json(cls, data: bytes | str, where: str) -> RunManifest:
        return _parse(cls, data, where)

    def to_json(self) -> bytes:
        return _dumps(self)

    def rows(self) -> dict[str, int]:
        return {table: entry.rows for table, entry in self.tables.items()}

    def paths(self) -> list[str]:
        """Every file the run lists, table by table."""
        return [f.path for entry in self.tables.values() for f in entry.files]

    def full_date(self) -> date:
        """The date of the full export this run's chain builds on (its own, for a full run)."""
        if self.type == "full":
            return etl_id_time(self.etl_id).date()
        return date.fromisoformat(self.full_export_date)


class RootManifest(_Document):
    """``manifest.json``: the newest complete run, and the one before it."""

    latest: RunManifest
    previous: RunManifest | None

    @classmethod
    def from_json(cls, data: bytes | str, where: str) -> RootManifest:
        return _parse(cls, data, where)

    def to_json(self) -> bytes:
        return _dumps(self)


def _parse(model: type[D], data: bytes | str, where: str) -> D:
    """The document, or ManifestError: one line naming ``where`` and the first bad field."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"manifest {where} is invalid: not JSON: {_line(exc)}") from exc
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise ManifestError(f"manifest {where} is invalid: {_first_problem(exc)}") from exc


def _first_problem(exc: ValidationError) -> str:
    problems = exc.errors(include_url=False)
    first = problems[0]
    field = ".".join(str(part) for part in first["loc"]) or "(the document)"
    shown = f"field {field}: {first['msg']}"
    if first["type"] != "missing":
        shown += f" (got {_line(repr(first['input']))[:80]})"
    more = len(problems) - 1
    return shown + (f"; and {more} more problem{'s' if more > 1 else ''}" if more else "")


def _line(value: object) -> str:
    return " ".join(str(value).split())


def _dumps(document: _Document) -> bytes:
    # exclude_unset: a parsed manifest is written back with exactly the fields it had
    shape = document.model_dump(mode="json", exclude_unset=True)
    return (json.dumps(shape, indent=2, sort_keys=True) + "\n").encode()


def _file_entry(record: FileRecord) -> FileEntry:
    return FileEntry(
        path=record.path, rows=record.rows, bytes=record.bytes,
        partition=record.partition, start_offset=record.start_offset,
    )  # fmt: skip


def table_summary(tables: Iterable[str], records: Iterable[FileRecord]) -> dict[str, TableEntry]:
    """Per table its files in offset order and totals; tables without rows stay listed."""
    ordered = sorted(records, key=lambda r: (r.table, r.partition, r.start_offset))
    files: dict[str, list[FileRecord]] = {t: [] for t in tables}
    for record in ordered:
        files.setdefault(record.table, []).append(record)
    return {
        table: TableEntry(
            files=tuple(_file_entry(r) for r in listed),
            rows=sum(r.rows for r in listed),
            bytes=sum(r.bytes for r in listed),
        )
        for table, listed in files.items()
    }


def build_run_manifest(
    run: RunRecord,
    records: Iterable[FileRecord],
    schema_versions: dict[str, str],
    completed_at: str,
    dead_letters: int = 0,
    full_export_date: str | None = None,
) -> RunManifest:
    tables = table_summary(run.entities, records)
    # a replay says so, with its TIME; other runs' manifests keep their shape
    replay = {"replay_to": run.replay_to} if run.replay_to else {}
    return RunManifest(
        **replay,
        etl_id=run.etl_id,
        type=run.type,
        status="complete",
        spec=Selection(
            tenants=tuple(run.tenants),
            entities=tuple(run.entities),
            destination=run.destination,
            format=run.format,
        ),
        start=run.start,
        cut=run.cut,
        started_at=run.created_at,
        completed_at=completed_at,
        tables=tables,
        totals=Totals(
            files=sum(len(t.files) for t in tables.values()),
            rows=sum(t.rows for t in tables.values()),
            bytes=sum(t.bytes for t in tables.values()),
        ),
        policy=run.policy,
        schema_versions={e: schema_versions[e] for e in run.entities},
        dead_letters=dead_letters,
        full_export_date=full_export_date or f"{run.export_date:%Y-%m-%d}",
    )


def root_manifest(latest: RunManifest, current: RootManifest | None) -> RootManifest:
    """The new ``manifest.json``; rewriting the same run keeps the run before it."""
    previous = current.latest if current is not None else None
    if previous is not None and previous.etl_id == latest.etl_id:
        previous = current.previous if current is not None else None
    return RootManifest(latest=latest, previous=previous)


def read_run(lake: Lake, relative: str) -> RunManifest | None:
    """The run manifest at ``relative``, None when there is none."""
    data = storage.read_bytes(lake, relative)
    return None if data is None else RunManifest.from_json(data, lake.path(relative))


def read_root(lake: Lake) -> RootManifest | None:
    data = storage.read_bytes(lake, layout.LATEST_MANIFEST)
    return None if data is None else RootManifest.from_json(data, lake.path(layout.LATEST_MANIFEST))


def write_manifests(lake: Lake, run_manifest: RunManifest) -> None:
    """Write ``_runs/<etl_id>.json``, then ``manifest.json`` unless a newer run owns it."""
    storage.write_bytes_atomic(
        lake, layout.run_manifest_path(run_manifest.etl_id), run_manifest.to_json()
    )
    publish_latest(lake, run_manifest)


def publish_latest(lake: Lake, run_manifest: RunManifest) -> None:
    current = read_root(lake)
    if current is not None and current.latest.etl_id > run_manifest.etl_id:
        return  # a later run completed meanwhile; never move the lake backwards
    storage.write_bytes_atomic(
        lake, layout.LATEST_MANIFEST, root_manifest(run_manifest, current).to_json()
    )
