"""A run's effective policy: everything besides its selection that decides what its rows hold.

Every run manifest records it, because a delta only continues a chain whose rows were made
the same way: another pii rule or secret, another opt-out or remap would leave the chain's
files disagreeing with each other, and a reconstruction would mix them silently. The secret
itself is never recorded, only a fingerprint that tells two secrets apart.
"""

from __future__ import annotations

from typing import Any

from sluiceway.common.fingerprint import secret_fingerprint
from sluiceway.common.spec import RunSpec

Policy = dict[str, Any]
# The fields in the order differences are reported.
FIELDS = ("fields", "from_date", "opt_out", "pii", "pii_secret_fingerprint", "remap")


def effective_policy(spec: RunSpec) -> Policy:
    """The spec's policy in a canonical form: equal policies compare equal as JSON."""
    hashes = "hash" in spec.pii.values()
    secret = spec.pii_secret.get_secret_value() if spec.pii_secret and hashes else None
    chosen = spec.fields
    return {
        "fields": {e: sorted(chosen[e]) for e in sorted(chosen) if e in spec.entities},
        "from_date": spec.from_date.isoformat() if spec.from_date else None,
        "opt_out": sorted(spec.opt_out),
        "pii": dict(sorted(spec.pii.items())),
        # only a hash rule uses the secret: without one, any secret makes the same rows
        "pii_secret_fingerprint": secret_fingerprint(secret) if secret else None,
        "remap": spec.remap.model_dump(mode="json") if spec.remap else None,
    }


def differences(mine: Policy | None, chain: Policy | None) -> list[str]:
    """What differs, field by field, each as a short phrase; the secret is never shown."""
    if mine is None or chain is None:
        side = "the chain's manifest" if chain is None else "this run"
        return [f"{side} records no policy (written by an older version)"] if mine != chain else []
    found = []
    for name in FIELDS:
        here, there = mine.get(name), chain.get(name)
        if here == there:
            continue
        if name == "pii_secret_fingerprint":
            found.append("pii_secret differs (another HMAC key)")
        else:
            found.append(f"{name} is {_shown(here)} here but {_shown(there)} in the chain")
    return found


def _shown(value: Any) -> str:
    return "unset" if value in (None, [], {}) else repr(value)
