"""Avro single-object encoding of change events, their envelopes derived from the catalog.

A value on the wire is ``C3 01`` + the 8-byte CRC-64-AVRO fingerprint of the writer
schema's canonical form + the Avro body, as the Avro specification defines it. A reader
finds the writer schema by fingerprint, so schemas can evolve without a registry server.

Each entity's envelope (``sluiceway.event.<Name>Event``) wraps the entity's record as
``sluiceway.common.catalog_schemas`` derives it from the active catalog; ``schemas/`` holds
the Jira example's envelopes, which the derived ones equal field for field (a changed
envelope would change its fingerprint, and lakes and topics written before would no longer
decode).
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from sluiceway.common.avro_compiled import Writer, compile_writer
from sluiceway.common.catalog import Catalog
from sluiceway.common.catalog_schemas import entity_record, record_name
from sluiceway.common.entities import active_catalog, per_catalog
from sluiceway.common.errors import ConfigError, InvalidEventError
from sluiceway.common.record_keys import check_key_types, integer_keyed, key_record
from sluiceway.common.resources import schema_dir

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8

Event = dict[str, Any]


@dataclass(frozen=True)
class EventSchema:
    """One entity's envelope schema, parsed, with its single-object header."""

    entity: str
    parsed: Any
    header: bytes

    @property
    def record(self) -> dict[str, Any]:
        """The entity record schema (the non-null branch of ``after``)."""
        after = next(f for f in self.parsed["fields"] if f["name"] == "after")
        return next(b for b in after["type"] if b != "null")

    @cached_property
    def record_name(self) -> str:
        """The entity record's full name, which names its branch of the ``after`` union."""
        name: str = self.record["name"]
        return name

    @cached_property
    def writer(self) -> Writer | None:
        """The envelope's compiled writer (sluiceway.common.avro_compiled), if it has one."""
        return compile_writer(plain_schema(self.parsed))


def default_schema_dir() -> Path:
    return schema_dir()


ENVELOPE_NAMESPACE = "sluiceway.event"


def envelope_file(schema_dir: Path, entity: str) -> Path:
    return schema_dir / f"{ENVELOPE_NAMESPACE}.{record_name(entity)}Event.avsc"


def envelope(catalog: Catalog, entity: str) -> dict[str, Any]:
    """The change-event envelope of one entity of ``catalog``, as an Avro schema: the
    first envelope (``entity_id`` a long) for a record key of one integer column, else the
    second (``entity_id`` the key's canonical text form, ``key`` the typed key columns;
    ``sluiceway.common.record_keys``)."""
    check_envelope_key(catalog, entity)
    record = entity_record(catalog, entity)
    doc = f"Always {json.dumps(entity)} for this envelope."
    namespace = f"{ENVELOPE_NAMESPACE}.{entity}"
    op = {"type": "enum", "name": "Op", "namespace": namespace,
          "symbols": ["r", "c", "u", "d"]}  # fmt: skip
    if integer_keyed(catalog, entity):
        ids: list[dict[str, Any]] = [{"name": "entity_id", "type": "long"}]
    else:
        key = key_record(catalog, entity, f"{namespace}.Key")
        ids = [
            {"name": "entity_id", "type": "string",
             "doc": "The record key's canonical text form (docs/architecture.md)."},
            {"name": "key", "type": key, "doc": "The record key's columns, typed."},
        ]  # fmt: skip
    return {
        "type": "record", "name": f"{record_name(entity)}Event", "namespace": ENVELOPE_NAMESPACE,
        "doc": f"Change-event envelope for the {entity} entity (docs/architecture.md).",
        "fields": [
            {"name": "tenant_id", "type": "string"},
            {"name": "entity", "type": "string", "doc": doc},
            *ids,
            {"name": "op", "type": op, "doc": "r snapshot read, c create, u update, d delete."},
            {"name": "position", "type": "long",
             "doc": "Commit LSN; strictly increasing per source in commit order."},
            {"name": "source_ts", "type": {"type": "long", "logicalType": "timestamp-micros"},
             "doc": "Commit time, UTC."},
            {"name": "snapshot", "type": "boolean"},
            {"name": "after", "type": ["null", record], "default": None,
             "doc": "The row after the change; null for deletes."},
        ],
    }  # fmt: skip


def check_envelope_key(catalog: Catalog, entity: str) -> None:
    """Refuse an entity whose record key columns an envelope cannot carry."""
    check_key_types(catalog, entity)


@per_catalog
def catalog_event_schemas(catalog: Catalog) -> dict[str, EventSchema]:
    """Every entity's envelope, derived from ``catalog``; computed once per catalog."""
    return {e: event_schema_from(e, envelope(catalog, e)) for e in catalog.names}


def load_event_schema(schema_dir: Path, entity: str) -> EventSchema:
    path = envelope_file(schema_dir, entity)
    if not path.is_file():
        raise ConfigError(f"schema for entity {entity!r} not found at {path}")
    return event_schema_from(entity, load_schema(str(path), _write_hint=False))


def event_schema_from(entity: str, schema: Any) -> EventSchema:
    """An EventSchema from a full (references resolved) envelope schema."""
    canonical = to_parsing_canonical_form(schema)
    header = MAGIC + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    return EventSchema(entity=entity, parsed=parse_schema(schema), header=header)


class Codec:
    """Encodes and decodes change events of every entity."""

    def __init__(self, schema_dir: Path | None = None, catalog: Catalog | None = None) -> None:
        """Envelopes derived from ``catalog`` (default: the active one), or, given
        ``schema_dir``, read from its ``.avsc`` files for the catalog's entities."""
        catalog = catalog or active_catalog()
        self.catalog = catalog
        if schema_dir is None:
            self.schemas = dict(catalog_event_schemas(catalog))
        else:
            self.schemas = {e: load_event_schema(schema_dir, e) for e in catalog.names}
        self._by_header = {s.header: s for s in self.schemas.values()}

    def with_schemas(self, extra: Iterable[EventSchema]) -> Codec:
        """A codec that also decodes values written with ``extra`` (e.g. a run's schemas).

        ``encode`` keeps using the change-topic schemas; use ``encode_with`` for the others.
        """
        clone = copy.copy(self)
        clone._by_header = {**self._by_header, **{s.header: s for s in extra}}
        return clone

    def encode_with(self, schema: EventSchema, event: Event) -> bytes:
        """Encode with a given schema; an event that does not fit it is an InvalidEventError."""
        after = event.get("after")
        if type(after) is dict:
            event = {**event, "after": (schema.record_name, after)}  # as in encode: skips a scan
        out = io.BytesIO()
        out.write(schema.header)
        try:
            # Strict: a column the run schema lacks must fail loudly, never vanish silently.
            schemaless_writer(out, schema.parsed, event, strict_allow_default=True)
        except Exception as exc:  # fastavro raises many types for a value of the wrong type
            raise InvalidEventError(
                f"{schema.entity} event does not fit schema {schema.header[2:].hex()}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return out.getvalue()

    def encode(self, event: Event) -> bytes:
        schema = self.schemas.get(event.get("entity", ""))
        if schema is None:
            raise InvalidEventError(
                f"cannot encode event of entity {event.get('entity')!r}; "
                f"expected one of {', '.join(self.schemas)}"
            )
        after = event.get("after")
        if type(after) is dict:
            # Name the union branch of ``after``: fastavro would otherwise validate the whole
            # record just to choose it, which costs a third of the encoding time.
            event = {**event, "after": (schema.record_name, after)}
        writer = schema.writer
        if writer is not None:
            try:
                return schema.header + writer(event)
            except Exception:  # an event the compiled writer leaves to fastavro
                pass  # which writes it as ever, or refuses it
        out = io.BytesIO()
        out.write(schema.header)
        schemaless_writer(out, schema.parsed, event)
        return out.getvalue()

    def schema_of(self, data: bytes) -> EventSchema | None:
        """The writer schema of a single-object encoded value, if it is a known one."""
        return self._by_header.get(bytes(data[:HEADER_LEN]))

    def decode(self, data: bytes | None) -> Event:
        if not data or len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise InvalidEventError(
                f"value is not Avro single-object encoded (starts {bytes(data or b'')[:4]!r}; "
                "expected C3 01 + 8-byte fingerprint)"
            )
        schema = self._by_header.get(bytes(data[:HEADER_LEN]))
        if schema is None:
            raise InvalidEventError(
                f"unknown schema fingerprint {bytes(data[2:HEADER_LEN]).hex()}; "
                "expected one of the schemas in schemas/"
            )
        try:
            body = schemaless_reader(io.BytesIO(data[HEADER_LEN:]), schema.parsed, None)
        except Exception as exc:  # fastavro raises many types on a corrupt body
            raise InvalidEventError(
                f"cannot decode {schema.entity} event body: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(body, dict):
            raise InvalidEventError(f"{schema.entity} event body is not a record")
        return body


def plain_schema(schema: Any) -> Any:
    """The schema without fastavro's bookkeeping keys (``__fastavro_parsed`` etc.), safe to
    rebuild, fingerprint or embed in a container file."""
    if isinstance(schema, dict):
        return {k: plain_schema(v) for k, v in schema.items() if not k.startswith("__")}
    if isinstance(schema, list):
        return [plain_schema(v) for v in schema]
    return schema


def event_key(tenant_id: str, entity_id: int | str) -> bytes:
    """The Kafka key of an entity's events: ``<tenant_id>/<entity_id>``."""
    return f"{tenant_id}/{entity_id}".encode()
