"""The pure parts of a migration: tested without a stack."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sluiceway.common.entities import active_catalog, id_columns
from sluiceway.common.errors import ConfigError
from sluiceway.common.record_keys import column_kind, move_id

Row = dict[str, Any]

# The state of a migration, kept in the target database beside the rows it describes.
RUNNING, CUTOVER_REQUESTED, CUT_OVER = "running", "cutover_requested", "cut_over"
_TRANSITIONS: dict[tuple[str, str], str] = {
    (RUNNING, "apply"): RUNNING,
    (CUTOVER_REQUESTED, "apply"): CUTOVER_REQUESTED,
    (RUNNING, "request_cutover"): CUTOVER_REQUESTED,
    (CUTOVER_REQUESTED, "request_cutover"): CUTOVER_REQUESTED,
    (CUTOVER_REQUESTED, "final_apply"): CUT_OVER,
}


def transition(status: str, event: str) -> str:
    """The state after ``event``; an event the state does not allow is one clear line."""
    found = _TRANSITIONS.get((status, event))
    if found is None:
        raise ConfigError(f"migration is {status}; cannot {event.replace('_', ' ')}")
    return found


def migration_name(from_tenant: str, to_tenant: str) -> str:
    return f"{from_tenant}-to-{to_tenant}"


def check_tenants(from_tenant: str, to_tenant: str, same_database: bool) -> None:
    if from_tenant == to_tenant and same_database:
        raise ConfigError(
            f"--from-tenant and --to-tenant are both {from_tenant!r} in the same database; "
            "name another target tenant or another --target-dsn"
        )


def map_row(entity: str, row: Mapping[str, Any], offset: int, tenant: str) -> Row:
    """A source row as the migration writes it into ``tenant``: its key and every reference
    moved as the processor's remap moves them (``move_id``: integers by ``offset``, uuids by
    a keyed mapping, text kept)."""
    catalog = active_catalog()
    kinds = {c: column_kind(catalog, entity, c) for c in id_columns(entity)}
    return {c: move_id(kinds[c], v, tenant, offset) if c in kinds else v for c, v in row.items()}


def pending_runs(runs: Iterable[tuple[str, str]], last_etl_id: str) -> list[str]:
    """The complete runs (etl_id, type) after the last one applied, in chain order: deltas only.

    A full export after the applied one means another chain was started at the destination;
    applying it on top would be wrong, so it is refused."""
    later = sorted((e, t) for e, t in runs if e > last_etl_id)
    fulls = [e for e, t in later if t != "delta"]
    if fulls:
        raise ConfigError(
            f"the migration's lake has a {fulls[0]} full export after the applied run "
            f"{last_etl_id}; it belongs to another chain; use a --dest of its own"
        )
    return [e for e, _ in later]


def latest_changes(
    rows: Iterable[Row], key_columns: tuple[str, ...]
) -> tuple[dict[tuple[Any, ...], Row], set[tuple[Any, ...]]]:
    """A delta's rows as (upserts by key, deleted keys): per record key (the values of every
    column of ``key_columns``, in order) the highest ``_position`` wins."""
    latest: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        key = tuple(row[c] for c in key_columns)
        if key not in latest or row["_position"] > latest[key]["_position"]:
            latest[key] = row
    upserts = {k: r for k, r in latest.items() if not r["_deleted"]}
    return upserts, {k for k, r in latest.items() if r["_deleted"]}


def _canonical(value: Any) -> Any:
    """A value as compared and digested: NaN (float or Decimal) equal to NaN, bytes as hex,
    instants in UTC."""
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, memoryview | bytes):
        return bytes(value).hex()
    if value != value:
        return "NaN"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def row_digest(row: Mapping[str, Any]) -> str:
    text = json.dumps({k: _canonical(v) for k, v in row.items()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def checksum(rows: Mapping[Any, Mapping[str, Any]]) -> str:
    """One digest of a table's rows, independent of the order they were read in."""
    total = hashlib.sha256()
    for key in sorted(rows):
        total.update(row_digest(rows[key]).encode())
    return total.hexdigest()


@dataclass(frozen=True)
class Difference:
    table: str
    id: Any  # the target's record key (the source's + offset)
    kind: str  # missing (in the target) | extra (in the target) | changed
    columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "id": list(self.id) if isinstance(self.id, tuple) else self.id,
            "kind": self.kind,
            "columns": list(self.columns),
        }


@dataclass(frozen=True)
class TableReport:
    table: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str
    differences: list[Difference] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_rows": self.source_rows, "target_rows": self.target_rows,
            "source_checksum": self.source_checksum, "target_checksum": self.target_checksum,
            "differences": len(self.differences),
        }  # fmt: skip


def compare_table(
    table: str, source: Iterable[Row], target: Iterable[Row], offset: int, tenant: str
) -> TableReport:
    """Source rows of tenant A (mapped by the id map into ``tenant``, B) against target rows
    of tenant B.

    Rows carry their own columns only (not the tenant's); they are matched by the catalog's
    record key: a difference names a one-column key by its value, a composite one by the
    list of its values."""
    columns = active_catalog().entity(table).record_key

    def key(row: Mapping[str, Any]) -> Any:
        return row[columns[0]] if len(columns) == 1 else tuple(row[c] for c in columns)

    mapped = {key(r): r for r in (map_row(table, s, offset, tenant) for s in source)}
    got = {key(r): dict(r) for r in target}
    differences = [Difference(table, k, "missing") for k in sorted(mapped.keys() - got.keys())]
    differences += [Difference(table, k, "extra") for k in sorted(got.keys() - mapped.keys())]
    for key in sorted(mapped.keys() & got.keys()):
        want, have = mapped[key], got[key]
        changed = tuple(
            sorted(
                c
                for c in want.keys() | have.keys()
                if _canonical(want.get(c)) != _canonical(have.get(c))
            )
        )
        if changed:
            differences.append(Difference(table, key, "changed", changed))
    return TableReport(table, len(mapped), len(got), checksum(mapped), checksum(got), differences)
