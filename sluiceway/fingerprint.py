"""Fingerprints of the PII secret: they tell two keys apart without revealing either.

A fingerprint is an HMAC-SHA256, keyed with the secret, of a fixed label. Without the
secret it cannot be computed, so run records and manifests may carry it where the secret
itself must never go; a worker compares its own key's fingerprint with the run's.
"""

from __future__ import annotations

import hashlib
import hmac

# Versioned so that a later change of construction can never match an old fingerprint.
_SCHEME = "hmac-sha256-v1"
_LABEL = b"sluiceway pii_secret fingerprint v1"


def secret_fingerprint(secret: str) -> str:
    """``hmac-sha256-v1:<32 hex>``: the same for the same secret, on every machine."""
    digest = hmac.new(secret.encode(), _LABEL, hashlib.sha256).hexdigest()
    return f"{_SCHEME}:{digest[:32]}"


def matches(fingerprint: str, secret: str | None) -> bool:
    """Whether ``secret`` is the key ``fingerprint`` was taken of (constant-time compare)."""
    if not secret:
        return False
    return hmac.compare_digest(fingerprint.encode(), secret_fingerprint(secret).encode())
