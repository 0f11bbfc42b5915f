"""Rows of any catalog's entities, drawn from a seed (pure: no database here).

Tenants are numbered 1..N and have one text form across every entity, as the lake's
``_tenant_id`` shows it: a tenant column of type integer or bigint holds N, a text column
``tenant-00N``, a uuid column a uuid derived from N, and a schema-per-tenant entity's tenant N
lives in the schema its pattern names with N as the tenant (``org_(\\d+)`` -> ``org_7``).

A row's references point at live parent keys of the same tenant (``KeyPool``), a
self-reference at an earlier row; key columns that no reference fills take a counter (integer
and text keys) or a random uuid. Cells are NULL or an edge value at a fixed rate, and always
on a row's second (edge) and third (NULL) draw, so a few rows show every kind of value.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sluiceway.common.catalog import Catalog, CatalogError, Entity, Reference
from sluiceway.common.pgtypes import UnmappableTypeError, check_catalog_types
from sluiceway.devstack.values import kind_of, text_form, value

Row = dict[str, Any]
Key = tuple[Any, ...]
NULL_RATE, EDGE_RATE = 0.1, 0.15
COUNTER_SPAN = 100_000  # an integer key holds 21,000 tenants' counters
_TENANT_NAMESPACE = uuid.UUID("6f1c1f84-5a8e-4f0e-9f6d-3c2f1e0a7b10")


def require_mapped(catalog: Catalog) -> None:
    """Refuse a catalog with a column type outside the mapping, naming each column."""
    problems = check_catalog_types(catalog)
    if problems:
        raise UnmappableTypeError("; ".join(problems))


class NoParentError(LookupError):
    """A row needs a parent (a NOT NULL reference) and its tenant has none live."""


class KeyPool:
    """The live record keys of one (tenant, entity): O(1) random picks and removals, and
    the keys sharing some columns' values (a reply's earlier replies on the same ticket)."""

    def __init__(self, keys: Sequence[Key] = ()) -> None:
        self.keys: list[Key] = []
        self._pos: dict[Key, int] = {}
        # positions -> their values -> keys; built on first use, kept up to date after
        self._groups: dict[tuple[int, ...], dict[Key, list[Key]]] = {}
        for key in keys:
            self.add(key)

    def add(self, key: Key) -> None:
        self._pos[key] = len(self.keys)
        self.keys.append(key)
        for positions, groups in self._groups.items():
            groups.setdefault(tuple(key[i] for i in positions), []).append(key)

    def remove(self, key: Key) -> None:
        pos, last = self._pos.pop(key), self.keys.pop()
        if last != key:
            self.keys[pos], self._pos[last] = last, pos
        for positions, groups in self._groups.items():
            groups[tuple(key[i] for i in positions)].remove(key)

    def matching(self, fixed: Mapping[int, Any]) -> Sequence[Key]:
        """The keys holding ``fixed`` values (by position); every key when none is fixed."""
        if not fixed:
            return self.keys
        positions = tuple(sorted(fixed))
        groups = self._groups.get(positions)
        if groups is None:
            groups = self._groups[positions] = {}
            for key in self.keys:
                groups.setdefault(tuple(key[i] for i in positions), []).append(key)
        return groups.get(tuple(fixed[i] for i in positions), [])

    def __contains__(self, key: object) -> bool:
        return key in self._pos

    def __len__(self) -> int:
        return len(self.keys)


def _tenant_text(type_name: str, index: int) -> str:
    if type_name in ("integer", "bigint", "smallint"):
        return str(index)
    if type_name == "uuid":
        return str(uuid.uuid5(_TENANT_NAMESPACE, str(index)))
    return f"tenant-{index:03d}"


def schema_for(pattern: str, tenant: str) -> str | None:
    """The schema name ``pattern`` gives ``tenant`` (its first group replaced), or None."""
    name = re.sub(r"\((?!\?)(?:\\.|[^)])*\)", lambda _m: tenant, pattern, count=1)
    name = re.sub(r"\\(.)", r"\1", name.removeprefix("^").removesuffix("$"))
    match = re.fullmatch(pattern, name)
    if match is None:
        return None
    return name if (match.group(1) if match.groups() else name) == tenant else None


@dataclass(frozen=True)
class Tenants:
    """The tenants 1..N of a catalog: text forms, and schemas of schema-per-tenant entities."""

    texts: tuple[str, ...]
    schemas: dict[str, dict[str, str]]
    """entity -> tenant text -> schema, for schema-per-tenant entities."""

    @classmethod
    def numbered(cls, catalog: Catalog, count: int) -> Tenants:
        return cls.of(catalog, [_text_of(catalog, i) for i in range(1, count + 1)])

    @classmethod
    def of(cls, catalog: Catalog, texts: Sequence[str]) -> Tenants:
        schemas: dict[str, dict[str, str]] = {}
        for name, entity in catalog.entities.items():
            pattern = entity.tenant.schema_pattern
            if pattern is None:
                continue
            found = {t: schema_for(pattern, t) for t in texts}
            missing = [t for t, schema in found.items() if schema is None]
            if missing:
                raise CatalogError(
                    f"entity {name!r}: cannot name a schema for tenant {missing[0]!r} from "
                    f"tenant.schema_pattern '{pattern}'; expected a pattern whose first group "
                    "is the tenant, e.g. 'org_(\\d+)'"
                )
            schemas[name] = {t: s for t, s in found.items() if s is not None}
        return cls(tuple(texts), schemas)

    def table(self, catalog: Catalog, entity: str, tenant: str) -> tuple[str, ...]:
        """The (schema, table) or (table,) holding ``tenant``'s rows of ``entity``."""
        found = catalog.entity(entity)
        if found.tenant.schema_pattern is not None:
            return (self.schemas[entity][tenant], found.table_name)
        return tuple(found.table.split(".", 1))


def _text_of(catalog: Catalog, index: int) -> str:
    """Tenant ``index``'s one text form, agreed by every entity's tenant rule."""
    column_types = {e.tenant.type for e in catalog.entities.values() if e.tenant.column}
    if len(column_types) > 1:
        raise CatalogError(
            f"tenant columns of types {sorted(column_types)} cannot name the same tenants; "
            "give every tenant column one type"
        )
    if column_types:
        return _tenant_text(column_types.pop(), index)
    patterns = [e.tenant.schema_pattern for e in catalog.entities.values()]
    for text in (str(index), f"tenant_{index:03d}", f"t{index}"):
        if all(p is None or schema_for(p, text) for p in patterns):
            return text
    raise CatalogError(f"no tenant name fits every tenant.schema_pattern of {patterns}")


class RowMaker:
    """Draws rows of one entity; ``pools`` hold the live keys of its tenant's entities."""

    def __init__(self, catalog: Catalog, name: str) -> None:
        self.name = name
        self.entity: Entity = catalog.entity(name)
        self.kinds = {c.name: kind_of(c.type, catalog.types) for c in self.entity.columns}
        self.nullable = {c.name for c in self.entity.columns if c.nullable}
        in_refs = {c for ref in self.entity.references for c in ref.columns}
        self.plain = [
            c for c in self.entity.column_names if c not in in_refs and c not in self.entity.key
        ]
        self.tenant_kind = (
            kind_of(self.entity.tenant.type, catalog.types) if self.entity.tenant.column else None
        )

    def key_of(self, row: Row) -> Key:
        return tuple(row[c] for c in self.entity.record_key)

    def parents_of(self, row: Row) -> list[tuple[str, Key]]:
        """The (entity, record key) of each parent ``row`` references (NULLs point nowhere)."""
        found = []
        for ref in self.entity.references:
            key = tuple(row[c] for c in ref.columns)
            if None not in key:
                found.append((ref.entity, key))
        return found

    def make(
        self, rng: random.Random, draw: int, counter: int, pools: Mapping[str, KeyPool]
    ) -> Row:
        """Row number ``draw`` of this entity in its tenant; ``counter`` fills key columns
        no reference fills. ``NoParentError`` when a required parent is missing."""
        row: Row = {}
        for ref in self.entity.references:
            self._refer(rng, ref, row, pools.get(ref.entity, KeyPool()))
        for column in self.entity.record_key:
            if column not in row:
                row[column] = self._key_value(rng, column, counter)
        for column in self.plain:
            row[column] = self.cell(rng, column, draw)
        return {c: row[c] for c in self.entity.column_names}

    def cell(self, rng: random.Random, column: str, draw: int = 99) -> Any:
        """A value for a non-key column: NULL, an edge value or an ordinary one."""
        if column in self.nullable and (draw == 2 or rng.random() < NULL_RATE):
            return None
        return value(self.kinds[column], rng, draw == 1 or rng.random() < EDGE_RATE)

    def _key_value(self, rng: random.Random, column: str, counter: int) -> Any:
        kind = self.kinds[column]
        if kind.name == "int":
            return counter
        if kind.name in ("text", "varchar"):
            return f"{self.name}-{counter}"
        return value(kind, rng)  # a uuid (or another type): random, unique in practice

    def _refer(self, rng: random.Random, ref: Reference, row: Row, pool: KeyPool) -> None:
        fixed = {i: row[c] for i, c in enumerate(ref.columns) if c in row}
        candidates = pool.matching(fixed)
        free = [c for c in ref.columns if c not in row]
        optional = all(c in self.nullable for c in free)
        if candidates and not (optional and rng.random() < 0.3):
            chosen = rng.choice(candidates)
            row.update({c: v for c, v in zip(ref.columns, chosen, strict=True) if c in free})
        elif optional:
            row.update(dict.fromkeys(free, None))
        else:
            raise NoParentError(f"{self.name} needs a live {ref.entity}")

    def texts(self, row: Row) -> dict[str, str | None]:
        """The row's cells as PostgreSQL text (None for NULL), by column."""
        return {c: None if v is None else text_form(self.kinds[c], v) for c, v in row.items()}

    def parse_key(self, column: str, text: str) -> Any:
        """A key column's value from its text form, as ``make`` draws it."""
        return int(text) if self.kinds[column].name == "int" else text


def seeded(seed: int, tenant: str, entity: str) -> random.Random:
    return random.Random(f"{seed}/{tenant}/{entity}")


def tenant_rows(
    makers: Mapping[str, RowMaker],
    order: Sequence[str],
    seed: int,
    tenant: tuple[int, str],
    count: int,
) -> dict[str, list[Row]]:
    """``count`` rows of every entity of one tenant (its number and text form), parents
    first (pure). Counter keys start at the tenant's number times ``COUNTER_SPAN``, so a key
    without the tenant column is unique across tenants too."""
    number, text = tenant
    first = number * COUNTER_SPAN + 1
    pools: dict[str, KeyPool] = {}
    rows: dict[str, list[Row]] = {}
    for name in order:
        maker, rng = makers[name], seeded(seed, text, name)
        pool = pools.setdefault(name, KeyPool())
        made = rows.setdefault(name, [])
        for draw in range(count):
            try:
                row = maker.make(rng, draw, first + draw, pools)
            except NoParentError:
                break
            if maker.key_of(row) in pool:
                continue  # a random key drawn twice: skip the row rather than collide
            pool.add(maker.key_of(row))
            made.append(row)
    return rows
