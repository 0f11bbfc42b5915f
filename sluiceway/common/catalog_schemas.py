"""Entity schemas derived from the catalog: each entity's Avro record and Arrow schema.

The record is named after the entity in CamelCase (``work_log`` -> ``WorkLog``), in the
catalog's namespace, and carries the entity's and the columns' docs; column types follow
``sluiceway.common.pgtypes``. ``sluiceway schemas generate`` writes the records as
``<namespace>.<Name>.avsc`` files, laid out one field per line so that a reviewer reads a
changed column as a changed line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from sluiceway.common.catalog import Catalog, CatalogError
from sluiceway.common.pgtypes import arrow_field, avro_field, check_catalog_types

_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def record_name(entity: str) -> str:
    """The Avro record name of an entity: its name in CamelCase."""
    return "".join(part[:1].upper() + part[1:] for part in entity.split("_"))


def schema_file_name(catalog: Catalog, entity: str) -> str:
    return f"{catalog.namespace}.{record_name(entity)}.avsc"


def check_catalog_schemas(catalog: Catalog) -> list[str]:
    """What keeps the catalog's schemas from being derived, one line each: unmapped types
    and names Avro does not allow."""
    problems = check_catalog_types(catalog)
    if not all(_AVRO_NAME.fullmatch(part) for part in catalog.namespace.split(".")):
        problems.append(f"namespace {catalog.namespace!r} is not a dotted Avro name")
    for entity in catalog.entities.values():
        for column in entity.columns:
            if not _AVRO_NAME.fullmatch(column.name):
                problems.append(
                    f"{entity.table}.{column.name}: Avro field names match "
                    f"{_AVRO_NAME.pattern}; rename the column in a view or exclude it"
                )
    return problems


def _checked(catalog: Catalog) -> Catalog:
    problems = check_catalog_schemas(catalog)
    if problems:
        raise CatalogError("; ".join(problems))
    return catalog


def entity_record(catalog: Catalog, name: str) -> dict[str, Any]:
    """The Avro record of one entity's rows."""
    entity = _checked(catalog).entity(name)
    record: dict[str, Any] = {
        "type": "record",
        "name": record_name(name),
        "namespace": catalog.namespace,
    }
    if entity.doc:
        record["doc"] = entity.doc
    record["fields"] = [avro_field(column, catalog.types) for column in entity.columns]
    return record


def entity_records(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Every entity's Avro record, by entity name."""
    return {name: entity_record(catalog, name) for name in _checked(catalog).entities}


def entity_arrow_schema(catalog: Catalog, name: str) -> pa.Schema:
    """The Arrow (Parquet) schema of one entity's columns, in the catalog's order."""
    entity = _checked(catalog).entity(name)
    return pa.schema([arrow_field(column, catalog.types) for column in entity.columns])


def render_record(record: dict[str, Any]) -> str:
    """A record as its .avsc file: the header on two lines, then one field per line."""
    head = ", ".join(_pair(key, record[key]) for key in ("type", "name", "namespace"))
    lines = ["{", f"  {head},"]
    if "doc" in record:
        lines.append(f"  {_pair('doc', record['doc'])},")
    lines.append('  "fields": [')
    fields = [f"    {_json(field)}" for field in record["fields"]]
    lines.append(",\n".join(fields))
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _pair(key: str, value: Any) -> str:
    return f"{_json(key)}: {_json(value)}"


def write_entity_schemas(catalog: Catalog, out: Path) -> list[Path]:
    """Write every entity's record into ``out``; the files written, in catalog order.
    A file whose text is already current is left untouched."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, record in entity_records(catalog).items():
        path = out / schema_file_name(catalog, name)
        text = render_record(record)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
