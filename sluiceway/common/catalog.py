"""The entity catalog: the one description of what Sluiceway captures and exports.

An entity is one source table (or, for schema-per-tenant sources, one table name found in
every tenant's schema). The catalog says, per entity, which columns are captured and with
which PostgreSQL types, which columns form the key, how the tenant of a row is found, which
column says when a row last changed, and which other entities its rows reference. Every
stage reads it: the Avro schemas are derived from it, references drive id remapping and
opt-out cascading, and their topological order drives restore and migrate.

The catalog is YAML, either in the config file's ``catalog:`` section or in a file of its
own; ``sluiceway source discover`` writes one from a live database for the user to edit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sluiceway.common.errors import ConfigError

_NAME = r"^[a-z_][a-z0-9_]*$"  # entity names become topic names, file names and Avro names
_IDENT = r"^[^\x00]{1,63}$"  # PostgreSQL identifiers: anything but NUL, at most 63 bytes


class CatalogError(ConfigError):
    """The catalog is invalid or contradicts itself."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UserType(_Frozen):
    """A user-defined type a column may have: an enum or a domain over a mapped type."""

    kind: Literal["enum", "domain"]
    values: tuple[str, ...] = ()
    """For an enum: its labels, in their declared order."""
    base: str | None = None
    """For a domain: the type it is defined over, as ``format_type`` prints it."""

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.kind == "enum" and not self.values:
            raise ValueError("an enum needs its values")
        if self.kind == "domain" and not self.base:
            raise ValueError("a domain needs its base type")
        return self


class Column(_Frozen):
    """One captured column."""

    name: str = Field(pattern=_IDENT)
    """The column's name in the source table; it keeps its name in the lake."""
    type: str = Field(min_length=1)
    """Its PostgreSQL type as ``format_type`` prints it (``numeric(12,2)``, ``text[]``,
    ``timestamp with time zone``), or the name of one of the catalog's ``types``."""
    nullable: bool = True
    """False when the column is ``NOT NULL``; the Avro field is then not a union with null."""
    doc: str = ""
    """Shown in the Avro schema and the docs; discover copies the column's comment here."""


class Tenant(_Frozen):
    """How the tenant of a row is found: a column of the table, or the schema it lives in."""

    column: str | None = Field(None, pattern=_IDENT)
    """The tenant column; its text form is ``_tenant_id`` in the lake."""
    type: str = "text"
    """The tenant column's PostgreSQL type (text, integer, bigint or uuid)."""
    schema_pattern: str | None = None
    """For schema-per-tenant sources: a regular expression over schema names whose first
    group (or, without groups, the whole name) is the tenant."""

    @model_validator(mode="after")
    def _one_rule(self) -> Self:
        if (self.column is None) == (self.schema_pattern is None):
            raise ValueError("give exactly one of tenant.column and tenant.schema_pattern")
        if self.schema_pattern is not None:
            try:
                re.compile(self.schema_pattern)
            except re.error as exc:
                raise ValueError(f"tenant.schema_pattern is not a regex: {exc}") from exc
        return self

    def tenant_of_schema(self, schema: str) -> str | None:
        """The tenant a schema-per-tenant schema belongs to, or None when it is not one."""
        if self.schema_pattern is None:
            return None
        match = re.fullmatch(self.schema_pattern, schema)
        if match is None:
            return None
        return match.group(1) if match.groups() else match.group(0)


class Reference(_Frozen):
    """A reference to a parent entity (a foreign key, within the same tenant)."""

    entity: str
    """The parent entity."""
    columns: tuple[str, ...] = Field(min_length=1)
    """This entity's referencing columns, in the order of the parent's key columns (without
    the tenant column when the key holds it)."""


class Entity(_Frozen):
    """One captured table."""

    table: str = Field(min_length=1)
    """``schema.table`` (or ``table``, in the search path); for a schema-per-tenant source
    only the table name, found in every schema matching ``tenant.schema_pattern``."""
    key: tuple[str, ...] = Field(min_length=1)
    """The key columns: the primary key, or columns the table's replica identity covers."""
    tenant: Tenant
    updated: str | None = None
    """A column telling when the row last changed, for ``from_date``; none disables it."""
    references: tuple[Reference, ...] = ()
    columns: tuple[Column, ...] = Field(min_length=1)
    """The captured columns, in the order the lake shows them; the tenant column is not
    among them (the lake carries it as ``_tenant_id``)."""
    exclude: tuple[str, ...] = ()
    """Columns of the table deliberately not captured (``check`` does not report them)."""
    doc: str = ""

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def record_key(self) -> tuple[str, ...]:
        """The key without the tenant column: what identifies a row within its tenant."""
        return tuple(k for k in self.key if k != self.tenant.column)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def schema_name(self) -> str | None:
        """The table's schema when ``table`` names one."""
        return self.table.rpartition(".")[0] or None

    @property
    def table_name(self) -> str:
        return self.table.rpartition(".")[2]

    def check(self, name: str) -> list[str]:
        """What is wrong inside this entity alone, one line each."""
        problems: list[str] = []
        names = self.column_names
        if len(set(names)) != len(names):
            problems.append(f"entity {name!r}: a column is listed twice")
        if self.tenant.column in names:
            problems.append(
                f"entity {name!r}: tenant column {self.tenant.column!r} is listed among the "
                "columns; the lake carries it as _tenant_id, so leave it out"
            )
        for key in self.record_key:
            if key not in names:
                problems.append(f"entity {name!r}: key column {key!r} is not a captured column")
        if not self.record_key:
            problems.append(f"entity {name!r}: the key holds only the tenant column")
        if self.updated is not None and self.updated not in names:
            problems.append(f"entity {name!r}: updated column {self.updated!r} is not captured")
        for ref in self.references:
            missing = [c for c in ref.columns if c not in names]
            if missing:
                problems.append(
                    f"entity {name!r}: reference to {ref.entity!r} uses uncaptured {missing}"
                )
        return problems


class Carrier(_Frozen):
    """Read and ignored: catalogs once named an entity whose rows carried a copy of the
    opted-out field; opt-out now reaches every descendant through its references."""

    entity: str
    column: str = Field(pattern=_IDENT)


class OptOut(_Frozen):
    """What a run spec's ``opt_out`` values name: a field of one entity. A row of that
    entity whose field holds an opted-out value is left out of the export, and so is every
    row that references it, directly or through a chain of references."""

    entity: str
    field: str = Field(pattern=_IDENT)
    carrier: Carrier | None = None
    """Ignored (kept so that catalogs naming one still load): the references reach every
    descendant, a copy of the field is not needed."""


class Catalog(_Frozen):
    """Every captured entity, by name."""

    namespace: str = "sluiceway.entity"
    """The Avro namespace of the entity records."""
    types: dict[str, UserType] = {}
    """Enums and domains the columns use, by the name ``format_type`` prints."""
    entities: dict[str, Entity] = Field(min_length=1)
    opt_out: OptOut | None = None
    """What a run spec's ``opt_out`` values name; none: specs cannot opt out."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[str] = []
        for name, entity in self.entities.items():
            if not re.match(_NAME, name):
                problems.append(f"entity name {name!r} must match {_NAME}")
            problems += entity.check(name)
            problems += self._reference_problems(name, entity)
        problems += self._opt_out_problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.order  # noqa: B018 - a cycle is refused when the catalog is read
        return self

    def _opt_out_problems(self) -> list[str]:
        rule = self.opt_out
        if rule is None:
            return []
        named = [(rule.entity, rule.field)]
        if rule.carrier is not None:
            named.append((rule.carrier.entity, rule.carrier.column))
        problems = []
        for entity, column in named:
            found = self.entities.get(entity)
            if found is None:
                problems.append(f"opt_out names unknown entity {entity!r}")
            elif column not in found.column_names:
                problems.append(f"opt_out: entity {entity!r} has no captured column {column!r}")
        return problems

    def _reference_problems(self, name: str, entity: Entity) -> list[str]:
        problems: list[str] = []
        for ref in entity.references:
            parent = self.entities.get(ref.entity)
            if parent is None:
                problems.append(f"entity {name!r} references unknown entity {ref.entity!r}")
            elif len(ref.columns) != len(parent.record_key):
                problems.append(
                    f"entity {name!r}: reference to {ref.entity!r} has {len(ref.columns)} "
                    f"columns; {ref.entity!r} is keyed by {list(parent.record_key)}"
                )
        return problems

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.entities)

    def entity(self, name: str) -> Entity:
        found = self.entities.get(name)
        if found is None:
            raise CatalogError(
                f"unknown entity {name!r}; the catalog has {', '.join(self.entities)}"
            )
        return found

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Parents before children (self-references aside): the order restore and migrate
        load in. A cycle of references between entities is refused, naming it."""
        done: list[str] = []
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting:
                cycle = [*visiting[visiting.index(name) :], name]
                raise ValueError(f"references form a cycle: {' -> '.join(cycle)}")
            visiting.append(name)
            for ref in self.entities[name].references:
                if ref.entity != name and ref.entity in self.entities:
                    visit(ref.entity)
            visiting.pop()
            done.append(name)

        for name in self.entities:
            visit(name)
        return tuple(done)

    def children(self, parent: str) -> tuple[tuple[str, Reference], ...]:
        """Every (entity, reference) pointing at ``parent``, self-references included."""
        return tuple(
            (name, ref)
            for name, entity in self.entities.items()
            for ref in entity.references
            if ref.entity == parent
        )

    def descendants(self, parents: Iterable[str]) -> tuple[str, ...]:
        """Every entity reachable from ``parents`` through references, in load order."""
        seen = set(parents)
        pending = list(seen)
        while pending:
            for child, _ref in self.children(pending.pop()):
                if child not in seen:
                    seen.add(child)
                    pending.append(child)
        return tuple(n for n in self.order if n in seen)

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_defaults=True)
        # flow style for leaves keeps one column per line, as a reviewer reads a table
        return yaml.safe_dump(
            data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
        )


def parse_catalog(data: Mapping[str, Any], origin: str) -> Catalog:
    """A catalog from its YAML document; one line per problem, naming ``origin``."""
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise CatalogError(f"catalog {origin}: {'; '.join(problems)}") from None


def load_catalog(path: Path) -> Catalog:
    """The catalog in a YAML file: the whole file, or its ``catalog:`` section."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CatalogError(f"catalog {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"catalog {path}: not valid YAML ({exc})") from None
    if isinstance(document, dict) and "catalog" in document:
        document = document["catalog"]
    if not isinstance(document, dict):
        raise CatalogError(f"catalog {path}: expected a mapping with 'entities'")
    return parse_catalog(document, str(path))
