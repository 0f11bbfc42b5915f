"""A captured table's live columns as a schema version of its entity.

PostgreSQL re-sends a table's Relation message (its columns, their types) after every
ALTER TABLE, before the first change written after it. The entity's schema version is the
catalog's entity with the live columns applied:

- a column the table gained is captured, as a nullable column after the catalog's ones
  (as Debezium does: events before it existed have it NULL), unless the catalog lists it
  under ``exclude``; one of a type outside the mapping is left out with a warning;
- a catalog column the table dropped leaves the version (no key, tenant, ``updated`` or
  referencing column: the catalog needs those);
- a catalog column whose type was widened takes the new type: smallint -> integer ->
  bigint, real -> double precision, varchar(n) -> varchar(m >= n) or text. Each keeps every
  value of the old type, and Avro resolution reads the old values as the new type.

Any other type change (a narrowing, or a change of kind) cannot be carried: capture stops
for that table (``UncarriedChangeError``) and goes on with the others.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from sluiceway.common.catalog import Catalog, CatalogError, Column, Entity
from sluiceway.common.codec import EventSchema, catalog_event_schemas, envelope, event_schema_from
from sluiceway.common.pgtypes import unmappable_reason
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.tables import CapturedTable, captured_table

log = logging.getLogger("sluiceway.capture")

_INTEGER_RANK = {"smallint": 0, "integer": 1, "bigint": 2}
_VARCHAR = re.compile(r"character varying(?:\((\d+)\))?")


class UncarriedChangeError(SourceSchemaError):
    """A change of a table's columns that no schema version can carry."""


@dataclass(frozen=True)
class Version:
    """What capture reads of a table and writes its events with."""

    table: CapturedTable
    columns: tuple[Column, ...]
    """The entity's columns in this version (the tenant column is not among them)."""
    schema: EventSchema | None
    """The envelope; None when it is the catalog's own (no change from the catalog)."""


def widens(old: str, new: str) -> bool:
    """Whether type ``new`` holds every value of type ``old`` with the same meaning."""
    if old in _INTEGER_RANK and new in _INTEGER_RANK:
        return _INTEGER_RANK[new] > _INTEGER_RANK[old]
    if (old, new) == ("real", "double precision"):
        return True
    was = _VARCHAR.fullmatch(old)
    if was is None:
        return False
    if new == "text":
        return True
    now = _VARCHAR.fullmatch(new)
    if now is None:
        return False
    return now.group(1) is None or (was.group(1) is not None and int(now[1]) >= int(was[1]))


def live_version(
    catalog: Catalog, name: str, live: Sequence[tuple[str, str]],
    before: Sequence[Column] | None = None,
) -> Version:  # fmt: skip
    """The schema version of entity ``name`` whose table has columns ``live`` ((name,
    ``format_type`` text), in table order), following the version of columns ``before``
    (default: the catalog's); UncarriedChangeError naming the column when no version can
    carry the change."""
    entity = catalog.entity(name)
    where = entity.table
    was = tuple(entity.columns if before is None else before)
    try:
        columns = _kept(entity, was, dict(live), where)
        columns += _added(catalog, entity, {c.name for c in was}, live, where)
        if columns == list(entity.columns):
            return Version(captured_table(catalog, name), entity.columns, None)
        changed = Entity.model_validate({**entity.model_dump(), "columns": columns})
        evolved = catalog.model_copy(update={"entities": {**catalog.entities, name: changed}})
        schema = event_schema_from(name, envelope(evolved, name))
    except (ValidationError, CatalogError) as exc:
        problem = " ".join(str(exc).split())[:300]
        raise UncarriedChangeError(
            f"{where}: its new columns break the catalog: {problem}"
        ) from None
    # e.g. varchar(n) -> text: the same Avro string, so the catalog's own envelope
    same = schema.header == catalog_event_schemas(catalog)[name].header
    return Version(captured_table(evolved, name), tuple(columns), None if same else schema)


def _kept(entity: Entity, was: Sequence[Column], live: dict[str, str], where: str) -> list[Column]:
    kept: list[Column] = []
    for column in was:
        now = live.get(column.name)
        if now is None:
            if column.name in entity.key:
                raise UncarriedChangeError(f"{where}.{column.name}: key column dropped")
            continue
        if now != column.type:
            if not widens(column.type, now):
                raise UncarriedChangeError(
                    f"{where}.{column.name}: type changed from {column.type} to {now}; only "
                    "a widening change (smallint -> integer -> bigint, real -> double "
                    "precision, varchar(n) -> varchar(m >= n) or text) is carried"
                )
            column = column.model_copy(update={"type": now})
        kept.append(column)
    return kept


def _added(
    catalog: Catalog, entity: Entity, was: set[str], live: Sequence[tuple[str, str]], where: str
) -> list[Column]:
    known = {*was, *entity.exclude, entity.tenant.column}
    added: list[Column] = []
    for column, type_name in live:
        if column in known:
            continue
        reason = unmappable_reason(type_name, catalog.types)
        if reason is not None:
            log.warning("%s.%s (%s) is not captured: %s", where, column, type_name, reason)
            continue
        added.append(Column(name=column, type=type_name))
    return added
