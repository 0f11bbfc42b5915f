"""Opt-out cascading: which rows a run leaves out. Pure.

The catalog's ``opt_out`` names an entity and a field; a run spec's ``opt_out`` lists values
(compared with the field's text form). A row is opted out when it is a row of that entity
whose field holds one of the values, or when one of its references (to any entity,
itself included) points at an opted-out row of the same tenant. So the rule cascades down
every chain of references: a comment of an issue of an opted-out project, a reply answering
a reply that answers a reply on an opted-out ticket.

When a row is judged: at the run's cut. An entity some other row of the cascade may
reference (the opted-out entity, its descendants with children, every self-referencing one)
is "judged": the pass before the run (processors/scan.py) reads its change topic from the
beginning up to the cut, entity by entity with parents first, and finds which of its rows
are opted out as their last version up to the cut and their ancestors' say. Every event of
such a row in the run follows that verdict, whichever version the event holds; so does a
delete, found by its id. The rows of the remaining entities of the cascade (leaves: nothing
references them) are judged by the version each event holds, against their parents'
verdicts; a leaf's delete carries no row, so it is kept (it tells its key, nothing more).

A delta judges at its own cut too: a row under an opted-out ancestor is left out even when
the ancestor did not change in the delta. A delta cannot take back what an earlier run
wrote: when a row becomes opted out (its field or an ancestor's changes, or it moves under
an opted-out parent), the delta writes none of its or its descendants' changes, but the
versions earlier runs wrote stay in the lake; when a row stops being opted out, the delta
writes only the changes in its range. A full export after such a change makes the lake the
rows not opted out at its cut.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sluiceway.common.catalog import Catalog
from sluiceway.common.entities import per_catalog

Key = tuple[str, ...]  # a row's record key (or a reference), each value in text form
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Cascade:
    """What the catalog's opt-out rule means for each entity, independent of any run."""

    entity: str
    field: str
    keys: dict[str, tuple[str, ...]]  # entity of the cascade -> its record key columns
    parents: dict[str, tuple[tuple[str, tuple[str, ...]], ...]]  # (parent, columns), self aside
    selfs: dict[str, tuple[tuple[str, ...], ...]]  # columns of each self-reference
    judged: tuple[str, ...]  # entities read before the run, parents first

    def columns(self, entity: str) -> tuple[str, ...]:
        """The columns of ``entity`` a verdict on its rows reads."""
        refs = [c for _p, cols in self.parents.get(entity, ()) for c in cols]
        refs += [c for cols in self.selfs.get(entity, ()) for c in cols]
        own = [self.field] if entity == self.entity else []
        return tuple(dict.fromkeys([*self.keys.get(entity, ()), *own, *refs]))


@per_catalog
def cascade_of(catalog: Catalog) -> Cascade | None:
    """The catalog's opt-out cascade; None when the catalog names no opt-out."""
    rule = catalog.opt_out
    if rule is None:
        return None
    names = catalog.descendants([rule.entity])
    inside = set(names)
    parents = {
        n: tuple(
            (r.entity, r.columns)
            for r in catalog.entities[n].references
            if r.entity in inside and r.entity != n
        )
        for n in names
    }
    selfs = {
        n: tuple(r.columns for r in catalog.entities[n].references if r.entity == n) for n in names
    }
    referenced = {p for n in names for p, _c in parents[n]} | {n for n in names if selfs[n]}
    return Cascade(
        entity=rule.entity,
        field=rule.field,
        keys={n: catalog.entities[n].record_key for n in names},
        parents=parents,
        selfs=selfs,
        judged=tuple(n for n in names if n in referenced),
    )


def text_key(row: Row, columns: Iterable[str]) -> Key | None:
    """The values of ``columns`` in text form; None when one is NULL (no row is named)."""
    values = [row.get(c) for c in columns]
    if any(v is None for v in values):
        return None
    return tuple(str(v) for v in values)


@dataclass
class OptedOut:
    """The verdicts of one run: the opted-out rows of every judged entity, by tenant."""

    cascade: Cascade | None
    values: frozenset[str]
    rows: dict[str, Container[tuple[str, Key]]] = field(default_factory=dict)
    ids: dict[str, Container[tuple[str, Any]]] = field(default_factory=dict)  # for deletes

    def holds(self, entity: str, tenant: str, entity_id: Any, after: Row | None) -> bool:
        """Whether the run leaves out this event of ``entity`` (``after`` None: a delete)."""
        cascade = self.cascade
        if cascade is None or not self.values or entity not in cascade.keys:
            return False
        if entity in self.rows:
            if after is None:
                return (tenant, entity_id) in self.ids[entity]
            key = text_key(after, cascade.keys[entity])
            return (tenant, key) in self.rows[entity]
        return after is not None and self.directly(entity, tenant, after)

    def directly(self, entity: str, tenant: str, after: Row) -> bool:
        """Opted out by the row's own field or by a parent of another entity."""
        cascade = self.cascade
        assert cascade is not None
        own = after.get(cascade.field) if entity == cascade.entity else None
        if own is not None and str(own) in self.values:
            return True
        for parent, columns in cascade.parents.get(entity, ()):
            key = text_key(after, columns)
            if key is not None and (tenant, key) in self.rows.get(parent, ()):
                return True
        return False


def no_opt_out() -> OptedOut:
    """The verdicts of a run without opt-outs: nothing is left out."""
    return OptedOut(None, frozenset())


class Verdicts:
    """Builds a run's OptedOut from the versions of the judged entities' rows: ``add`` each
    version of an entity in the order it was written, then ``close`` it, parents first."""

    def __init__(self, cascade: Cascade | None, values: Iterable[str]) -> None:
        self.opted = OptedOut(cascade, frozenset(values))
        # while an entity is read: its rows opted out directly (by their last version), and
        # the self-referenced parents of every row that has one, each with the row's id
        self.direct: dict[tuple[str, Key], Any] = {}
        self.edges: dict[tuple[str, Key], tuple[Any, list[Key]]] = {}

    def add(self, entity: str, tenant: str, entity_id: Any, after: Row) -> None:
        cascade = self.opted.cascade
        assert cascade is not None
        key = text_key(after, cascade.keys[entity])
        if key is None:
            return
        row = (tenant, key)
        if self.opted.directly(entity, tenant, after):
            self.direct[row] = entity_id
        else:
            self.direct.pop(row, None)
        up = [k for cols in cascade.selfs[entity] if (k := text_key(after, cols)) is not None]
        if up:
            self.edges[row] = (entity_id, up)
        else:
            self.edges.pop(row, None)

    def close(self, entity: str) -> None:
        """The entity's verdicts: its direct ones, spread down its self-references."""
        children: dict[tuple[str, Key], list[tuple[str, Key]]] = {}
        for (tenant, key), (_id, up) in self.edges.items():
            for parent in up:
                children.setdefault((tenant, parent), []).append((tenant, key))
        rows = set(self.direct)
        ids = {(t, i) for (t, _k), i in self.direct.items()}
        pending = list(rows)
        while pending:
            for child in children.get(pending.pop(), ()):
                if child not in rows:
                    rows.add(child)
                    ids.add((child[0], self.edges[child][0]))
                    pending.append(child)
        self.opted.rows[entity], self.opted.ids[entity] = rows, ids
        self.direct, self.edges = {}, {}

    def result(self) -> OptedOut:
        return self.opted


def verdicts_of(
    cascade: Cascade | None, values: Iterable[str], versions: Iterable[tuple[str, str, Any, Row]]
) -> OptedOut:
    """The verdicts the pass before a run reaches on these row versions, each an
    (entity, tenant, entity id, row) in the order they were written."""
    verdicts = Verdicts(cascade, values)
    if cascade is None:
        return verdicts.result()
    by_entity: dict[str, list[tuple[str, Any, Row]]] = {}
    for entity, tenant, entity_id, row in versions:
        by_entity.setdefault(entity, []).append((tenant, entity_id, row))
    for entity in cascade.judged:
        for tenant, entity_id, row in by_entity.get(entity, ()):
            verdicts.add(entity, tenant, entity_id, row)
        verdicts.close(entity)
    return verdicts.result()
