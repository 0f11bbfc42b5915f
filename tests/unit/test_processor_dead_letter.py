"""What the processor dead-letters: the run's redaction wherever the event decodes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sluiceway.common.codec import Codec
from sluiceway.common.entities import active_catalog
from sluiceway.common.spec import parse_spec
from sluiceway.processors.dead_letter import RAW, REDACTED, WITHHELD, dead_letter_body
from sluiceway.processors.opt_out import cascade_of, verdicts_of
from sluiceway.processors.transforms import MASK, pii_hash
from tests.unit.test_processor_batch import _issue

CODEC = Codec()
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = parse_spec(
    {
        "tenants": ["t1"], "destination": "/tmp/lake", "opt_out": ["HIDDEN"],
        "fields": {"issue": ["summary", "description", "project_key", "updated"]},
        "pii": {"issue.summary": "hash", "issue.description": "mask"},
        "pii_secret": "k",
    }
)  # fmt: skip


# the pass before the run found project 1 opted out, and so its issue 5
projects = verdicts_of(
    cascade_of(active_catalog()),
    SPEC.opt_out,
    [
        ("project", "t1", 1, {"id": 1, "key": "HIDDEN"}),
        ("issue", "t1", 5, {"id": 5, "project_id": 1}),
    ],
)


def test_a_decodable_event_is_projected_and_redacted() -> None:
    event = _issue("t1", 3, T0, "OPEN") | {"entity_id": 4}  # contradicts its key: a dead letter
    event["after"] |= {"summary": "secret summary", "description": "secret text"}
    body, kind = dead_letter_body(CODEC.encode(event), CODEC, SPEC, projects)
    assert kind == REDACTED
    assert body is not None and b"secret" not in body
    out = json.loads(body)
    assert out["after"] == {
        "id": 3, "summary": pii_hash("secret summary", SPEC), "description": MASK,
        "project_key": "OPEN", "updated": T0.isoformat(),
    }  # fmt: skip
    assert (out["tenant_id"], out["entity_id"], out["op"]) == ("t1", 4, "u")


def test_a_row_the_run_would_not_export_is_withheld() -> None:
    for event in (_issue("t1", 5, T0, "HIDDEN"), _issue("t2", 3, T0, "OPEN")):
        event["after"] |= {"key": "SECRET-3"}
        body, kind = dead_letter_body(CODEC.encode(event), CODEC, SPEC, projects)
        assert kind == WITHHELD
        assert body is not None and json.loads(body)["after"] is None


def test_only_bytes_that_do_not_decode_are_kept_as_they_came() -> None:
    for value in (b"not avro", CODEC.encode(_issue("t1", 3, T0, "OPEN"))[:-5], None):
        assert dead_letter_body(value, CODEC, SPEC, projects) == (value, RAW)
