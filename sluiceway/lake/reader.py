"""Reading a lake: the calls status, reconstruct, restore, replay and migrate share.

A reader opens the destination read-only (``storage.open_readonly``: no write probe, nothing
created, so reading a copy or a deleted destination never writes) and trusts only what a run
manifest lists: the sink writes a run's manifest last, atomically, so a manifest that exists
describes files that exist. Every manifest is parsed into ``RunManifest`` / ``RootManifest``;
a malformed one raises ``ManifestError`` naming the file and the bad field.
"""

from __future__ import annotations

from collections.abc import Iterator

from sluiceway.lake import layout, manifest, storage
from sluiceway.lake.errors import ManifestError
from sluiceway.lake.manifest import RootManifest, RunManifest
from sluiceway.lake.storage import Lake, open_readonly

__all__ = [
    "Lake",
    "ManifestError",
    "RootManifest",
    "RunManifest",
    "latest_manifest",
    "latest_run",
    "open_readonly",
    "run_manifest",
    "run_manifest_names",
    "run_manifests",
]


def run_manifest(lake: Lake, etl_id: str) -> RunManifest | None:
    """The manifest of run ``etl_id``, or None while the run is not complete."""
    relative = layout.run_manifest_path(etl_id)
    found = manifest.read_run(lake, relative)
    if found is not None and found.etl_id != etl_id:
        raise ManifestError(
            f"manifest {lake.path(relative)} is invalid: it holds the manifest of run "
            f"{found.etl_id}"
        )
    return found


def latest_manifest(lake: Lake) -> RootManifest | None:
    """The root manifest (the newest complete run's summary), or None before the first run."""
    return manifest.read_root(lake)


def latest_run(lake: Lake) -> RunManifest | None:
    """The newest complete run's manifest, as ``manifest.json`` names it; None before one."""
    root = manifest.read_root(lake)
    return None if root is None else root.latest


def run_manifest_names(lake: Lake) -> list[str]:
    """The run manifests' names under ``_runs/``, newest first (etl_ids sort by start time);
    temporaries of a manifest being written are not manifests."""
    names = (info.base_name for info in storage.list_names(lake, layout.RUNS_DIR))
    return sorted(
        (n for n in names if n.endswith(".json") and not n.startswith(".")
         and not layout.is_temp_name(n)),
        reverse=True,
    )  # fmt: skip


def run_manifests(lake: Lake) -> Iterator[tuple[str, RunManifest]]:
    """(path relative to the lake, manifest) of every complete run, newest first. A manifest
    removed between the listing and the read is skipped."""
    for name in run_manifest_names(lake):
        relative = f"{layout.RUNS_DIR}/{name}"
        document = manifest.read_run(lake, relative)
        if document is not None:
            yield relative, document
