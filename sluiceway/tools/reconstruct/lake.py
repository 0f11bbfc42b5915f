"""Reading a destination for reconstruct: manifests and the files they list. I/O, read-only.

Nothing here writes to the lake (``sluiceway.lake.storage.open_lake`` would leave a write probe):
reconstructing from a read-only copy of a lake must work.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import S3Settings
from sluiceway.lake import layout, reader
from sluiceway.lake.manifest import RootManifest, RunManifest
from sluiceway.lake.storage import Lake
from sluiceway.tools.reconstruct.errors import BrokenChainError
from sluiceway.tools.reconstruct.plan import FileRef

Advance = Callable[[int], None]


def open_source(destination: str, s3: S3Settings) -> Lake:
    """The destination's filesystem, as the sinks open it, but without writing anything."""
    lake = reader.open_readonly(destination, s3)
    dest = lake.dest
    try:
        kind = lake.fs.get_file_info(lake.path(layout.RUNS_DIR)).type
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"destination {dest.display} cannot be read: {_one_line(exc)}") from exc
    if kind != pafs.FileType.Directory:
        raise BrokenChainError(
            f"destination {dest.display} has no run manifests ({layout.RUNS_DIR}/ is missing); "
            "expected a lake written by sluiceway export"
        )
    return lake


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def load_runs(lake: Lake) -> dict[str, RunManifest]:
    """Every run manifest under ``_runs/`` (only complete runs have one), by etl_id."""
    runs: dict[str, RunManifest] = {}
    for relative, run in reader.run_manifests(lake):
        if layout.run_manifest_path(run.etl_id) != relative:
            raise BrokenChainError(f"{lake.path(relative)} holds the manifest of run {run.etl_id}")
        runs[run.etl_id] = run
    return dict(sorted(runs.items()))


def load_root(lake: Lake) -> RootManifest | None:
    return reader.latest_manifest(lake)


def check_files(lake: Lake, files: tuple[FileRef, ...], advance: Advance) -> list[pa.Schema]:
    """Every listed file exists and holds the rows its manifest says; their schemas."""
    schemas = []
    for ref in files:
        schemas.append(_check_file(lake, ref))
        advance(1)
    return schemas


def _owner(ref: FileRef) -> str:
    return f"run {ref.etl_id}'s manifest"


def _check_file(lake: Lake, ref: FileRef) -> pa.Schema:
    path = lake.listed(ref.path, _owner(ref))
    try:
        with lake.fs.open_input_file(path) as src:
            meta = pq.read_metadata(src)
    except FileNotFoundError as exc:
        raise BrokenChainError(
            f"file {path} listed by run {ref.etl_id}'s manifest is missing"
        ) from exc
    except (OSError, pa.ArrowException) as exc:
        raise BrokenChainError(
            f"file {path} listed by run {ref.etl_id}'s manifest is not readable Parquet: "
            f"{_one_line(exc)}"
        ) from exc
    if meta.num_rows != ref.rows:
        raise BrokenChainError(
            f"file {path}: run {ref.etl_id}'s manifest lists {ref.rows} rows but the file's "
            f"Parquet metadata says {meta.num_rows}"
        )
    return meta.schema.to_arrow_schema()


def dataset(lake: Lake, files: tuple[FileRef, ...], schema: pa.Schema) -> pads.Dataset:
    """The rows of these files under one schema (columns a file lacks read as null).

    A dataset streams from its files as DuckDB scans it, so memory stays bounded."""
    paths = [lake.listed(ref.path, _owner(ref)) for ref in files]
    return pads.dataset(paths, schema=schema, format="parquet", filesystem=lake.fs)
