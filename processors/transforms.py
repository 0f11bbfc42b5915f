"""Pure transforms applied to every change event of a run.

Agents only loop, call these and send; tests exercise these functions directly.
"""

from __future__ import annotations

from sluiceway.codec import Event
from sluiceway.errors import InvalidEventError


def key_tenant(key: bytes | None) -> str | None:
    """The tenant half of a ``<tenant_id>/<entity_id>`` key, or None when malformed."""
    if not key:
        return None
    tenant, sep, entity_id = key.decode("utf-8", "replace").rpartition("/")
    return tenant if sep and tenant and entity_id.isdigit() else None


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
