"""Pure transforms applied to every change event of a run.

Agents only loop, call these and send; tests exercise these functions directly.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from sluiceway.common.catalog import Catalog
from sluiceway.common.codec import Event, event_key
from sluiceway.common.entities import active_catalog, id_columns, per_catalog, updated_column
from sluiceway.common.errors import ConfigError, InvalidEventError
from sluiceway.common.record_keys import column_kind, is_key_text, key_text, move_id
from sluiceway.common.spec import RunSpec
from sluiceway.processors.opt_out import OptedOut


def key_tenant(key: bytes | None) -> str | None:
    """The tenant half of a ``<tenant_id>/<entity_id>`` key, or None when malformed."""
    if not key:
        return None
    tenant, sep, entity_id = key.decode("utf-8", "replace").rpartition("/")
    shaped = entity_id.isdigit() or is_key_text(entity_id)  # either envelope's entity_id
    return tenant if sep and tenant and shaped else None


def select(key: bytes | None, tenants: frozenset[str]) -> bool:
    """Keep only the run's tenants; decided on the key so other tenants are never decoded."""
    return key_tenant(key) in tenants


def validate(key: bytes | None, event: Event, entities: frozenset[str]) -> Event:
    """Reject an event whose body contradicts its key or names an entity outside the run."""
    expected = f"{event['tenant_id']}/{event['entity_id']}".encode()
    if key != expected:
        raise InvalidEventError(f"key {key!r} does not match event body; expected {expected!r}")
    if event["entity"] not in entities:
        raise InvalidEventError(
            f"entity {event['entity']!r} not in this run; expected one of {sorted(entities)}"
        )
    if event["op"] != "d" and event["after"] is None:
        raise InvalidEventError(f"op {event['op']!r} without a row; expected 'after' to be set")
    return event


# Run-spec transforms: in_scope -> opted_out -> project -> redact -> remap (see transform).

Row = dict[str, Any]

MASK = "****"


def in_scope(event: Event, spec: RunSpec) -> bool:
    """The event's tenant and entity are selected and it changed at or after ``from_date``
    (by the entity's own ``updated`` column, as the catalog names it)."""
    if event["tenant_id"] not in spec.tenants or event["entity"] not in spec.entities:
        return False
    if spec.from_date is None:
        return True
    column = updated_column(event["entity"])
    if column is None:  # the catalog gives the entity no update time: from_date is off for it
        return True
    after = event["after"]
    # A delete has no row, so its commit time stands in for the row's update time.
    moment = event["source_ts"] if after is None else after.get(column)
    # A NULL update time cannot show the row changed since from_date: left out.
    return moment is not None and bool(moment >= spec.from_date)


def opted_out(event: Event, spec: RunSpec, opted: OptedOut) -> bool:
    """The event's row holds, or descends through references from a row that holds, a
    value the spec opts out (processors/opt_out.py: what is judged, and when)."""
    if not spec.opt_out:
        return False
    return opted.holds(event["entity"], event["tenant_id"], event["entity_id"], event["after"])


def project(row: Row, entity: str, spec: RunSpec) -> Row:
    """The row restricted to the spec's columns for ``entity`` (``id`` always)."""
    return {c: row[c] for c in spec.columns(entity, tuple(row)) if c in row}


def redact(row: Row, entity: str, spec: RunSpec) -> Row:
    """The row with every pii rule of ``entity`` applied; never a raw value of a ruled field."""
    rules = spec.pii_rules(entity)
    out: Row = {}
    for column, value in row.items():
        rule = rules.get(column)
        if rule == "drop":
            continue
        if rule is None or value is None:
            out[column] = value
        elif rule == "hash":
            out[column] = pii_hash(value, spec)
        else:
            out[column] = MASK
    return out


def pii_hash(value: object, spec: RunSpec) -> str:
    """Hex HMAC-SHA256 of the value's string form, keyed with the destination's secret."""
    if spec.pii_secret is None:
        raise ConfigError("a pii rule is 'hash' but the spec has no pii_secret")
    key = spec.pii_secret.get_secret_value().encode()
    return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()


def remap(event: Event, spec: RunSpec) -> Event:
    """The event moved to the target tenant, every id and reference moved alike: integers
    by the offset, uuids by ``remap_uuid``, text ids kept.

    Columns under a pii rule are no longer ids (hashed or masked text), so they stay as is.
    """
    if spec.remap is None:
        return event
    entity, after = event["entity"], event["after"]
    kinds = id_kinds(entity)
    if after is not None:
        rules = spec.pii_rules(entity)
        after = {
            c: remap_id(kinds[c], v, spec) if c in kinds and c not in rules else v
            for c, v in after.items()
        }
    out = {**event, "tenant_id": spec.remap.tenant, "after": after}
    key = event.get("key")
    if key is None:
        out["entity_id"] = event["entity_id"] + spec.remap.id_offset
    else:
        out["key"] = {c: remap_id(kinds[c], v, spec) for c, v in key.items()}
        out["entity_id"] = key_text(list(out["key"].values()))
    return out


def id_kinds(entity: str) -> dict[str, str]:
    """Each id column of ``entity`` (its record key and references) and how remap moves it."""
    return _id_kinds(active_catalog())[entity]


@per_catalog
def _id_kinds(catalog: Catalog) -> dict[str, dict[str, str]]:
    return {e: {c: column_kind(catalog, e, c) for c in id_columns(e)} for e in catalog.entities}


def remap_id(kind: str, value: Any, spec: RunSpec) -> Any:
    """One id column's value in the target tenant (None stays None)."""
    assert spec.remap is not None
    return move_id(kind, value, spec.remap.tenant, spec.remap.id_offset)


def remap_uuid(value: Any, tenant: str) -> str:
    """A source uuid's uuid in the target ``tenant`` (``move_id``)."""
    return str(move_id("uuid", value, tenant, 0))


def transform(event: Event, spec: RunSpec, opted: OptedOut) -> Event | None:
    """What a run writes for ``event``, or None when the spec leaves it out."""
    if not in_scope(event, spec) or opted_out(event, spec, opted):
        return None
    entity, after = event["entity"], event["after"]
    if after is not None:
        after = redact(project(after, entity, spec), entity, spec)
    return remap({**event, "after": after}, spec)


def output_key(event: Event) -> bytes:
    """The run-topic key of a transformed event: ``<tenant>/<entity_id>`` after remap."""
    return event_key(event["tenant_id"], event["entity_id"])
