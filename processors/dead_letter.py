"""What a run writes to the processor's dead-letter topic for an event it cannot take.

The dead-letter topic is shared by every run and tenant, so it must not become the one place
where a raw PII value lands. An event that decodes is written as JSON with the run's field
projection and PII rules applied, as the run would have written it (before remap: the
source tenant and ids are what an operator looks for). Its row is left out altogether when
the run would not export it anyway: another tenant's body behind a run tenant's key, or a
project the spec opts out. Only bytes that do not decode at all are kept as they came; the
topic's short retention (``KafkaSettings.dlq_retention_ms``) bounds how long they stay.

The ``sw-body`` header says which it is.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from sluiceway.common.codec import Codec, Event
from sluiceway.common.errors import InvalidEventError
from sluiceway.common.spec import RunSpec
from sluiceway.processors.opt_out import OptedOut
from sluiceway.processors.transforms import opted_out, project, redact

BODY_HEADER = "sw-body"
REDACTED = b"redacted-json"  # the decoded event as JSON, its row projected and redacted
WITHHELD = b"withheld-json"  # the decoded event as JSON without its row
RAW = b"raw"  # the bytes as they came: they do not decode


def dead_letter_body(
    value: bytes | None, codec: Codec, spec: RunSpec, opted: OptedOut
) -> tuple[bytes | None, bytes]:
    """The value to dead-letter for ``value`` and what it is (REDACTED, WITHHELD or RAW)."""
    try:
        event = codec.decode(value)
    except InvalidEventError:
        return value, RAW
    schema = codec.schema_of(value or b"")
    # the writer schema names the row's columns; the body's own entity field may lie
    entity = schema.entity if schema is not None else str(event.get("entity"))
    after = event.get("after")
    kind = REDACTED
    if isinstance(after, dict):
        try:
            after = _row(event, entity, after, spec, opted)
        except (KeyError, TypeError, ValueError):  # a row the rules cannot read: leave it out
            after = None
        kind = REDACTED if after is not None else WITHHELD
    body = {**event, "after": after}
    return json.dumps(body, default=_jsonable, sort_keys=True).encode(), kind


def _row(
    event: Event, entity: str, after: dict[str, Any], spec: RunSpec, opted: OptedOut
) -> dict[str, Any] | None:
    """The row as the run would export it, or None when the run would not export it."""
    as_schema = {**event, "entity": entity}
    if event.get("tenant_id") not in spec.tenants or opted_out(as_schema, spec, opted):
        return None
    return redact(project(after, entity, spec), entity, spec)


def _jsonable(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
