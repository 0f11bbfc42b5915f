"""Record keys in change events: which envelope an entity gets, and the key's text form.

An entity whose record key (its key without the tenant column) is one integer column keeps
the first envelope: ``entity_id`` is that integer (a long). Every other entity (a uuid, a
text, or a composite key) gets the second envelope: ``key`` is a record of the key columns,
typed as in the entity record, so a delete (which carries no row) still carries the typed
key, and ``entity_id`` is the key's canonical text form.

The canonical text form is the compact JSON array of the key columns' PostgreSQL text forms
in the catalog's key order (``["5f0c…-…", "2"]``; a one-column key is a one-element
array), with every ``/`` written as ``\\u002f``: a Kafka key is ``<tenant_id>/<entity_id>``, so
the last ``/`` of a key always separates the tenant, whatever either holds. It is what
Kafka keys, partitioning and key lookups compare; it is not an order of the keys' values.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sluiceway.common.catalog import Catalog, CatalogError
from sluiceway.common.pgtypes import column_type

# Avro types a key column may have: their values have one text form, which is PostgreSQL's.
KEY_AVRO = frozenset({"int", "long", "string"})


def _avro_type(catalog: Catalog, entity: str, column: str) -> Any:
    found = catalog.entity(entity)
    return column_type(found.column(column), catalog.types).avro


def integer_keyed(catalog: Catalog, entity: str) -> bool:
    """Whether ``entity``'s record key is one integer column (the first envelope)."""
    key = catalog.entity(entity).record_key
    return len(key) == 1 and _avro_type(catalog, entity, key[0]) in ("int", "long")


def _keyable(avro: Any) -> bool:
    if isinstance(avro, str):
        return avro in KEY_AVRO
    return isinstance(avro, dict) and avro == {"type": "string", "logicalType": "uuid"}


def check_key_types(catalog: Catalog, entity: str) -> None:
    """Refuse a key column whose values have no single text form (dates, decimals, enums,
    arrays...), naming it and what is expected."""
    found = catalog.entity(entity)
    for column in found.record_key:
        if not _keyable(_avro_type(catalog, entity, column)):
            raise CatalogError(
                f"entity {entity!r}: key column {column!r} has type "
                f"{found.column(column).type!r}; a record key holds smallint, integer, "
                "bigint, text, varchar, char or uuid columns"
            )


def key_record(catalog: Catalog, entity: str, name: str) -> dict[str, Any]:
    """The Avro record ``key`` of the second envelope: the key columns, never null."""
    found = catalog.entity(entity)
    fields = [
        {"name": c, "type": column_type(found.column(c), catalog.types).avro}
        for c in found.record_key
    ]
    return {"type": "record", "name": name, "fields": fields}


def key_text(values: Sequence[Any]) -> str:
    """The canonical text form of a record key's values (see the module docstring)."""
    texts = [str(v) for v in values]
    return json.dumps(texts, ensure_ascii=False, separators=(",", ":")).replace("/", "\\u002f")


def key_values(text: str) -> list[str]:
    """The key columns' text forms in a canonical text form; ValueError if it is not one."""
    values = json.loads(text)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{text!r} is not a JSON array of texts")
    return values


def is_key_text(text: str) -> bool:
    """Whether ``text`` is shaped like a canonical text form (a cheap test for Kafka keys)."""
    return text.startswith("[") and text.endswith("]")


def identity(
    columns: Sequence[str], integer: bool, values: Mapping[str, Any]
) -> tuple[int | str, dict[str, Any] | None]:
    """``entity_id`` and ``key`` of an event whose row (or key) holds ``values``."""
    if integer:
        return values[columns[0]], None
    key = {c: values[c] for c in columns}
    return key_text(list(key.values())), key


def column_kind(catalog: Catalog, entity: str, column: str) -> str:
    """How remap moves an id column: ``integer`` (by the offset), ``uuid`` (a keyed
    mapping) or ``text`` (kept)."""
    avro = _avro_type(catalog, entity, column)
    if avro in ("int", "long"):
        return "integer"
    if isinstance(avro, dict) and avro.get("logicalType") == "uuid":
        return "uuid"
    return "text"


def move_id(kind: str, value: Any, tenant: str, offset: int) -> Any:
    """One id column's value (of ``column_kind`` ``kind``) in the target ``tenant`` as remap
    moves it: an integer by ``offset``; a uuid to the UUIDv5 named by the tenant in the
    source uuid's namespace, so every reference to a row maps as its key does and a remap run
    again maps the same way; text kept. None stays None."""
    if value is None or kind == "text":
        return value
    if kind == "uuid":
        return str(uuid.uuid5(uuid.UUID(str(value)), tenant))
    return value + offset
