"""The effective policy a manifest records: canonical, complete, and free of the secret."""

from __future__ import annotations

import json
from typing import Any

from sluiceway.common.fingerprint import secret_fingerprint
from sluiceway.common.policy import differences, effective_policy
from sluiceway.common.spec import parse_spec

SECRET = "a-long-random-secret-7c41d0"


def spec(**more: Any) -> Any:
    return parse_spec({"tenants": ["t1"], "destination": "/tmp/lake", **more})


def test_equal_policies_compare_equal_whatever_the_order_they_were_written_in() -> None:
    one = spec(opt_out=["B", "A"], pii={"user.email_address": "hash", "issue.summary": "mask"},
               pii_secret=SECRET, fields={"issue": ["summary", "key"]})  # fmt: skip
    two = spec(opt_out=["A", "B"], pii={"issue.summary": "mask", "user.email_address": "hash"},
               pii_secret=SECRET, fields={"issue": ["key", "summary"]})  # fmt: skip
    assert effective_policy(one) == effective_policy(two)
    assert differences(effective_policy(one), effective_policy(two)) == []


def test_every_field_of_the_policy_is_recorded_and_the_secret_only_as_a_fingerprint() -> None:
    policy = effective_policy(
        spec(
            from_date="2026-01-01T00:00:00+01:00",
            opt_out=["P"],
            pii={"user.email_address": "hash"},
            pii_secret=SECRET,
            remap={"tenant": "t9", "id_offset": 5},
        )
    )
    assert policy == {
        "fields": {}, "from_date": "2025-12-31T23:00:00+00:00", "opt_out": ["P"],
        "pii": {"user.email_address": "hash"}, "pii_secret_fingerprint": secret_fingerprint(SECRET),
        "remap": {"tenant": "t9", "id_offset": 5},
    }  # fmt: skip
    assert SECRET not in json.dumps(policy)
    assert secret_fingerprint(SECRET) != secret_fingerprint(SECRET + "x")


def test_a_secret_no_hash_rule_uses_changes_nothing() -> None:
    assert effective_policy(spec(pii_secret=SECRET)) == effective_policy(spec())


def test_differences_name_each_field_and_never_the_secret() -> None:
    mine = effective_policy(spec(pii={"user.email_address": "hash"}, pii_secret=SECRET))
    chain = effective_policy(spec(pii={"user.email_address": "hash"}, pii_secret="other-secret"))
    assert differences(mine, chain) == ["pii_secret differs (another HMAC key)"]
    assert differences(effective_policy(spec(opt_out=["P"])), effective_policy(spec())) == [
        "opt_out is ['P'] here but unset in the chain"
    ]
    assert differences(effective_policy(spec()), None) == [
        "the chain's manifest records no policy (written by an older version)"
    ]
    assert differences(None, None) == []
