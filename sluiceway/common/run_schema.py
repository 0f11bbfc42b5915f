"""The Avro schema of a run topic, derived from the change-event envelope and the run spec.

The derivation is deterministic, so the sink, which reads the same spec, derives the same
schemas and decodes run-topic values by fingerprint without a registry. Records live in a
namespace named after a digest of their fields, so two projections never share a
fingerprint with each other or with the change-topic schema.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sluiceway.common.codec import Codec, EventSchema, event_schema_from, plain_schema
from sluiceway.common.spec import RunSpec

RUN_NAMESPACE = "sluiceway.run"
# hash and mask replace a value with text, whatever the column's type was.
REDACTED_TYPE: list[Any] = ["null", "string"]


def _short_name(full_name: str) -> str:
    return full_name.rpartition(".")[2]


def run_record_fields(base: EventSchema, spec: RunSpec) -> list[dict[str, Any]]:
    """The entity record's fields a run keeps, retyped where a pii rule rewrites them."""
    rules = spec.pii_rules(base.entity)
    record = plain_schema(base.record)
    kept = set(spec.columns(base.entity, tuple(f["name"] for f in record["fields"])))
    fields = []
    for field in record["fields"]:
        name = field["name"]
        rule = rules.get(name)
        if name not in kept or rule == "drop":
            continue
        if rule in ("hash", "mask"):
            field = {"name": name, "type": REDACTED_TYPE, "default": None}
        fields.append(field)
    return fields


def _digest(entity: str, fields: list[dict[str, Any]]) -> str:
    # doc strings do not change the canonical form, so they must not change the name either.
    shape = [{k: v for k, v in f.items() if k != "doc"} for f in fields]
    text = json.dumps([entity, shape], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_event_schema(base: EventSchema, spec: RunSpec) -> EventSchema:
    """``base``'s envelope with ``after`` restricted to what ``spec`` keeps for its entity."""
    fields = run_record_fields(base, spec)
    namespace = f"{RUN_NAMESPACE}.{_digest(base.entity, fields)}"
    envelope = plain_schema(base.parsed)
    record = {
        "type": "record",
        "name": f"{namespace}.{_short_name(base.record['name'])}",
        "fields": fields,
    }
    envelope["name"] = f"{namespace}.{_short_name(envelope['name'])}"
    envelope["fields"] = [
        {**f, "type": ["null", record]} if f["name"] == "after" else f for f in envelope["fields"]
    ]
    return event_schema_from(base.entity, envelope)


def run_event_schemas(spec: RunSpec, codec: Codec | None = None) -> dict[str, EventSchema]:
    """entity -> run-topic schema, for every entity the spec selects."""
    schemas = (codec or Codec()).schemas
    return {entity: run_event_schema(schemas[entity], spec) for entity in spec.entities}
