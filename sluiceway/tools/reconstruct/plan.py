"""Which runs rebuild a table, and the proof that they form an unbroken chain. Pure.

A chain is the latest full export at or before ``as_of`` and every delta after it up to
``as_of``. Manifests record each run's ``start`` and ``cut`` offsets per change-topic
partition; a delta must start exactly where the run before it cut, or the changes in
between are in no run. Partitions outside the chain's tenants are the exception: a run
does not read them and starts them at its own cut (``sluiceway.control.export._offsets``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sluiceway.common.entities import entity_names
from sluiceway.common.errors import ConfigError
from sluiceway.common.policy import differences
from sluiceway.lake.layout import listed_path
from sluiceway.lake.manifest import RootManifest, RunManifest
from sluiceway.tools.reconstruct.errors import BrokenChainError


@dataclass(frozen=True)
class FileRef:
    """One Parquet file a manifest lists, with the row count it promises."""

    etl_id: str
    path: str  # relative to the destination root
    rows: int


@dataclass(frozen=True)
class Plan:
    table: str
    as_of: str
    runs: tuple[RunManifest, ...]  # the full export first, then its deltas in order
    files: tuple[FileRef, ...]


def files_of(run: RunManifest, table: str) -> list[FileRef]:
    """The table's files in ``run``, each proven to stay in the lake; their rows must add up."""
    entry = run.tables.get(table)
    if entry is None:
        raise BrokenChainError(f"run {run.etl_id}'s manifest lists no table {table!r}")
    owner = f"run {run.etl_id}'s manifest"
    refs = [FileRef(run.etl_id, listed_path(f.path, owner), f.rows) for f in entry.files]
    if sum(r.rows for r in refs) != entry.rows:
        raise BrokenChainError(
            f"run {run.etl_id}'s manifest says table {table!r} has {entry.rows} rows "
            f"but its files add up to {sum(r.rows for r in refs)}"
        )
    return refs


def check_root(runs: dict[str, RunManifest], root: RootManifest | None) -> None:
    """Every run manifest.json names must have its own manifest under _runs/."""
    slots = {"latest": root.latest, "previous": root.previous} if root else {}
    for slot, named in slots.items():
        if named is not None and named.etl_id not in runs:
            raise BrokenChainError(
                f"manifest.json names run {named.etl_id} as {slot} but "
                f"_runs/{named.etl_id}.json is missing"
            )


def pick_as_of(runs: dict[str, RunManifest], root: RootManifest | None, as_of: str | None) -> str:
    """The run to reconstruct at: the one asked for, else the latest."""
    if not runs:
        raise BrokenChainError("the destination has no run manifests under _runs/; "
                               "reconstruct needs a full export")  # fmt: skip
    if as_of is None:
        named = root.latest.etl_id if root else None
        return named if named in runs else max(runs)
    if as_of not in runs:
        ids = sorted(runs)
        raise ConfigError(
            f"--as-of {as_of!r} is not a run of the destination; expected the etl_id of one "
            f"of its {len(ids)} runs ({ids[0]} ... {ids[-1]})"
        )
    return as_of


def chain_runs(runs: dict[str, RunManifest], as_of: str) -> list[RunManifest]:
    """The latest full export at or before ``as_of`` and the deltas after it up to ``as_of``."""
    upto = [runs[i] for i in sorted(runs) if i <= as_of]
    fulls = [r for r in upto if r.type == "full"]
    if not fulls:
        raise BrokenChainError(
            f"the destination has no full export at or before run {as_of}; "
            "reconstruct starts from one (sluiceway export start --type full)"
        )
    base = fulls[-1]
    return [base, *(r for r in upto if r.etl_id > base.etl_id)]


def check_known(table: str) -> None:
    if table not in entity_names():
        known = ", ".join(entity_names())
        raise ConfigError(f"table {table!r} is unknown; expected one of {known}")


def check_table(chain: list[RunManifest], table: str) -> None:
    base = chain[0]
    if table not in base.spec.entities:
        raise ConfigError(
            f"table {table!r} is not in full export {base.etl_id}; "
            f"expected one of {', '.join(base.spec.entities)}"
        )


def check_selection(chain: list[RunManifest]) -> None:
    """Deltas continue their full export's tenants, entities and policy, in Parquet."""
    base = chain[0]
    for run in chain:
        if run.spec.format != "parquet":
            raise ConfigError(
                f"run {run.etl_id} wrote {run.spec.format!r} files; reconstruct reads Parquet "
                "runs only"
            )
        mine, first = _selection(run), _selection(base)
        if mine != first:
            raise BrokenChainError(
                f"delta {run.etl_id} selects tenants {mine[0]} and entities {mine[1]}, but "
                f"full export {base.etl_id} selects {first[0]} and {first[1]}; they are not "
                "one chain"
            )
        found = differences(run.policy, base.policy)
        if found:
            raise BrokenChainError(
                f"delta {run.etl_id} was made with another policy than full export "
                f"{base.etl_id}: {'; '.join(found)}; they are not one chain (reconstruct "
                "as of an earlier run, or from a new full export)"
            )


def _selection(run: RunManifest) -> tuple[list[str], list[str]]:
    return sorted(run.spec.tenants), sorted(run.spec.entities)


def read_partitions(chain: list[RunManifest]) -> set[tuple[str, int]]:
    """Partitions some run of the chain read (start before cut): the chain's tenants'."""
    return {
        (t, p) for run in chain for t, ps in run.start.items()
        for p, offset in ps.items() if offset != run.cut.get(t, {}).get(p)
    }  # fmt: skip


def check_gaps(chain: list[RunManifest]) -> None:
    """Each delta starts where the run before it cut, partition by partition."""
    read = read_partitions(chain)
    for before, run in itertools.pairwise(chain):
        topics = sorted(set(before.cut) | set(run.start))
        for topic in topics:
            parts = set(before.cut.get(topic, {})) | set(run.start.get(topic, {}))
            for part in sorted(parts):
                _check_partition(before, run, topic, part, (topic, part) in read)


def _check_partition(
    before: RunManifest, run: RunManifest, topic: str, part: int, read: bool
) -> None:
    start = run.start.get(topic, {}).get(part)
    cut = before.cut.get(topic, {}).get(part)
    if start is not None and start == cut:
        return
    if start is not None and not read and start == run.cut.get(topic, {}).get(part):
        return  # a partition none of the chain's tenants live in: no run reads it
    raise BrokenChainError(
        f"gap in the delta chain: run {run.etl_id} starts {topic}[{part}] at offset {start} "
        f"but the run before it, {before.etl_id}, cut at {cut}; the changes between are in no "
        "run (is a run's manifest missing from _runs/?)"
    )


def make_plan(
    runs: dict[str, RunManifest], root: RootManifest | None, table: str, as_of: str | None
) -> Plan:
    """Pick and prove the chain for ``table``; raises before anything is read or written."""
    check_known(table)
    check_root(runs, root)
    at = pick_as_of(runs, root, as_of)
    chain = chain_runs(runs, at)
    check_table(chain, table)
    check_selection(chain)
    check_gaps(chain)
    files = tuple(ref for run in chain for ref in files_of(run, table))
    return Plan(table=table, as_of=at, runs=tuple(chain), files=files)
