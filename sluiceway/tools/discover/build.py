"""An entity catalog built from what PostgreSQL says about its tables (no I/O here).

Each table becomes an entity or a line of the report saying why not; each column is captured
or excluded with a line saying why; each foreign key between catalogued tables becomes a
reference, or a line. The result always loads: references that would close a cycle are
dropped (and reported), since restore and migrate load parents before children.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from sluiceway.common.catalog import Catalog, Column, Entity, Reference, Tenant, UserType
from sluiceway.common.errors import ConfigError
from sluiceway.common.pg_catalog import PgForeignKey, PgTable

Unmapped = Callable[[str, Mapping[str, UserType]], str | None]
"""The reason a column type (as ``format_type`` prints it) cannot be captured, or None."""
TypesOf = Callable[[Iterable[int]], dict[str, UserType]]
"""The enums and domains some column types (by oid) use."""

TENANT_TYPES = ("text", "integer", "bigint", "uuid")
UPDATED_NAMES = ("updated", "updated_at", "modified", "modified_at", "last_modified")


@dataclass(frozen=True)
class Rule:
    """Which tables discover takes and how their tenant is found."""

    tenant_column: str | None = None
    schema_pattern: str | None = None
    tables: tuple[str, ...] = ()
    """Table names or globs (``name`` or ``schema.name``); none: every table."""
    updated_column: str | None = None
    """None: the first of ``UPDATED_NAMES`` that is a timestamp or a date."""

    def selects(self, table: PgTable) -> bool:
        return not self.tables or any(
            fnmatchcase(table.name, p) or fnmatchcase(table.qualified, p) for p in self.tables
        )


@dataclass(frozen=True)
class Discovery:
    catalog: Catalog
    not_mapped: tuple[tuple[str, str], ...]
    """(``schema.table[.column]``, why it is not in the catalog as it stands in the database)."""


@dataclass
class _Draft:
    table: PgTable
    tenant: Tenant
    key: tuple[str, ...]
    columns: list[Column]
    type_oids: list[int]
    exclude: list[str]
    updated: str | None
    name: str = ""
    references: list[Reference] = field(default_factory=list)

    def entity(self) -> Entity:
        return Entity(
            table=self.table.name if self.tenant.schema_pattern else self.table.qualified,
            key=self.key,
            tenant=self.tenant,
            updated=self.updated,
            references=tuple(self.references),
            columns=tuple(self.columns),
            exclude=tuple(self.exclude),
            doc=self.table.doc,
        )


class NothingFoundError(ConfigError):
    """No table could be catalogued; ``problems`` says why for each one looked at."""

    def __init__(self, report: list[tuple[str, str]]) -> None:
        self.problems = [f"{where}: {reason}" for where, reason in report]
        reasons = f": {'; '.join(self.problems[:5])}" if report else ""
        super().__init__(f"no table matches the rule and has a usable key{reasons}")


class _Report(list[tuple[str, str]]):
    def add(self, where: str, reason: str) -> None:
        self.append((where, reason))


def valid_name(text: str) -> str:
    """``text`` as an entity name: lower case, anything but ``[a-z0-9_]`` made ``_``."""
    name = re.sub(r"[^a-z0-9_]", "_", text.lower())
    return name if re.match(r"[a-z_]", name) else f"_{name}"


def by_tenant_column(
    tables: Iterable[PgTable], rule: Rule, types_of: TypesOf, unmapped: Unmapped
) -> Discovery:
    """One entity per table that has the tenant column (of a keyable type) and a key."""
    assert rule.tenant_column is not None
    report = _Report()
    drafts: list[_Draft] = []
    for table in tables:
        found = table.column(rule.tenant_column)
        if found is None or not rule.selects(table):
            continue
        if found.type not in TENANT_TYPES:
            report.add(
                f"{table.qualified}.{found.name}",
                f"tenant column of type {found.type}; expected one of {', '.join(TENANT_TYPES)}:"
                " table skipped",
            )
            continue
        tenant = Tenant(column=found.name, type=found.type)
        draft = _draft(table, tenant, rule, types_of, unmapped, report)
        drafts += [draft] if draft else []
    return _finish(drafts, types_of, report)


def by_schema_pattern(
    tables: Iterable[PgTable],
    tenant_schemas: list[str],
    rule: Rule,
    types_of: TypesOf,
    unmapped: Unmapped,
) -> Discovery:
    """One entity per table name found in the tenant schemas; the first schema holding it
    gives its columns, and any other schema where it differs is reported."""
    assert rule.schema_pattern is not None
    report = _Report()
    tenant = Tenant(schema_pattern=rule.schema_pattern)
    groups: dict[str, list[PgTable]] = {}
    for table in sorted(tables, key=lambda t: (t.schema, t.name)):
        if rule.selects(table):
            groups.setdefault(table.name, []).append(table)
    drafts: list[_Draft] = []
    for found in groups.values():
        _compare_tenant_schemas(found, tenant_schemas, report)
        draft = _draft(found[0], tenant, rule, types_of, unmapped, report)
        drafts += [draft] if draft else []
    return _finish(drafts, types_of, report)


def _compare_tenant_schemas(found: list[PgTable], schemas: list[str], report: _Report) -> None:
    model = found[0]
    shape = {(c.name, c.type, c.not_null, c.generated) for c in model.columns}
    for other in found[1:]:
        differ = shape ^ {(c.name, c.type, c.not_null, c.generated) for c in other.columns}
        if differ:
            names = ", ".join(sorted({d[0] for d in differ}))
            report.add(
                other.qualified,
                f"columns differ from {model.qualified} ({names}); "
                f"the catalog follows {model.qualified}",
            )
        if other.primary_key != model.primary_key:
            report.add(
                other.qualified,
                f"primary key {list(other.primary_key)} differs from "
                f"{model.qualified}'s {list(model.primary_key)}",
            )
    holding = {t.schema for t in found}
    for schema in schemas:
        if schema not in holding:
            report.add(
                f"{schema}.{model.name}", f"missing in this tenant schema (found in {model.schema})"
            )


def _key(table: PgTable) -> tuple[str, ...]:
    if table.primary_key:
        return table.primary_key
    return table.identity_index if table.replica_identity == "i" else ()


def _draft(
    table: PgTable,
    tenant: Tenant,
    rule: Rule,
    types_of: TypesOf,
    unmapped: Unmapped,
    report: _Report,
) -> _Draft | None:
    key = _key(table)
    if not key:
        report.add(table.qualified, "no primary key (nor a replica identity index): skipped")
        return None
    types = types_of(c.type_oid for c in table.columns)
    columns, oids, exclude = [], [], []
    for col in table.columns:
        if col.name == tenant.column:
            continue
        reason = unmapped(col.type, types)
        if col.generated or reason is not None:
            exclude.append(col.name)
            why = "generated column" if col.generated else f"{col.type}: {reason}"
            report.add(f"{table.qualified}.{col.name}", f"{why}; excluded")
            continue
        columns.append(Column(name=col.name, type=col.type, nullable=not col.not_null, doc=col.doc))
        oids.append(col.type_oid)
    record_key = [k for k in key if k != tenant.column]
    lost = [k for k in record_key if k in exclude]
    if lost or not record_key:
        why = f"key column(s) {lost} excluded" if lost else "the key holds only the tenant"
        report.add(table.qualified, f"{why}: skipped")
        return None
    updated = _updated(table, {c.name for c in columns}, rule.updated_column, report)
    return _Draft(table, tenant, key, columns, oids, exclude, updated)


def _updated(table: PgTable, captured: set[str], wanted: str | None, report: _Report) -> str | None:
    if wanted is not None:
        if wanted in captured:
            return wanted
        report.add(table.qualified, f"no captured column {wanted!r}: no updated column")
        return None
    for name in UPDATED_NAMES:
        found = table.column(name)
        if found is not None and found.temporal and name in captured:
            return name
    return None


def _finish(drafts: list[_Draft], types_of: TypesOf, report: _Report) -> Discovery:
    if not drafts:
        raise NothingFoundError(report)
    _name(drafts)
    by_oid = {d.table.oid: d for d in drafts}
    for draft in drafts:
        draft.references = _references(draft, by_oid, report)
    _break_cycles({d.name: d for d in drafts}, report)
    loose = Catalog(
        types=types_of(oid for d in drafts for oid in d.type_oids),
        entities={d.name: d.entity() for d in drafts},
    )
    # parents first, as a reader (and restore) goes
    catalog = loose.model_copy(update={"entities": {n: loose.entities[n] for n in loose.order}})
    return Discovery(catalog, tuple(report))


def _name(drafts: list[_Draft]) -> None:
    """Table names as entity names, prefixed by the schema where two schemas share one."""
    counts = Counter(valid_name(d.table.name) for d in drafts)
    used: set[str] = set()
    for draft in sorted(drafts, key=lambda d: (d.table.schema, d.table.name)):
        base = valid_name(draft.table.name)
        if counts[base] > 1:
            base = valid_name(f"{draft.table.schema}_{draft.table.name}")
        name, n = base, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        draft.name = name


def _references(child: _Draft, drafts: dict[int, _Draft], report: _Report) -> list[Reference]:
    found: list[tuple[int, str, Reference]] = []
    names = [c.name for c in child.columns]
    for fk in child.table.foreign_keys:
        where = child.table.qualified + (f".{fk.columns[0]}" if len(fk.columns) == 1 else "")
        parent = drafts.get(fk.parent)
        columns = (
            f"{fk.parent_table} is not in the catalog"
            if parent is None
            else _reference_columns(fk, parent, child.tenant.column)
        )
        if not isinstance(columns, str) and set(columns) - set(names):
            columns = f"it uses excluded column(s) {sorted(set(columns) - set(names))}"
        if isinstance(columns, str):
            report.add(where, f"foreign key {fk.name}: {columns}; reference dropped")
            continue
        assert parent is not None
        found.append(
            (names.index(columns[0]), fk.name, Reference(entity=parent.name, columns=columns))
        )
    return [ref for _, _, ref in sorted(found, key=lambda f: f[:2])]


def _reference_columns(
    fk: PgForeignKey, parent: _Draft, child_tenant: str | None
) -> tuple[str, ...] | str:
    """The child's columns in the order of the parent's record key, or why there are none.
    The tenant column is implied: a key holding it is referenced within the same tenant."""
    pairs = dict(zip(fk.parent_columns, fk.columns, strict=True))
    tenant = parent.tenant.column
    if tenant in pairs and pairs[tenant] != child_tenant:
        return f"it maps {pairs[tenant]!r} to the tenant column {tenant!r} (crosses tenants)"
    wanted = [k for k in parent.key if k != tenant]
    if set(pairs) - {tenant} != set(wanted):
        return (
            f"it references {list(fk.parent_columns)} of {fk.parent_table}, not its key "
            f"{list(parent.key)}"
        )
    return tuple(pairs[k] for k in wanted)


def _break_cycles(drafts: dict[str, _Draft], report: _Report) -> None:
    """Drop each reference that closes a cycle, depth first in name order (a self-reference
    is no cycle: a row's parent row is loaded in the same pass)."""
    state: dict[str, str] = {}

    def visit(name: str) -> None:
        state[name] = "visiting"
        draft = drafts[name]
        kept = []
        for ref in draft.references:
            if ref.entity != name and state.get(ref.entity) == "visiting":
                report.add(
                    draft.table.qualified,
                    f"reference to {ref.entity} {list(ref.columns)}"
                    " closes a cycle of references; dropped",
                )
                continue
            if ref.entity not in state:
                visit(ref.entity)
            kept.append(ref)
        draft.references = kept
        state[name] = "done"

    for name in sorted(drafts):
        if name not in state:
            visit(name)
