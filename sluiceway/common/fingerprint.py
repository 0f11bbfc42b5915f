"""Fingerprints of the PII secret: they tell two keys apart without revealing either.

A fingerprint is an HMAC-SHA256, keyed with the secret, of a fixed label (32 hex digits).
Without the secret it cannot be computed, so run records and manifests may carry it where
the secret itself must never go; a worker compares its own key's fingerprint with the run's.
Like any fingerprint it lets a holder test guesses, so a PII secret must be a random string.
"""

from __future__ import annotations

import hashlib
import hmac

# A pii hash is keyed the same way over a row's value, so the label is one no column holds by
# chance; "v1" so that a later construction never matches an old fingerprint.
_LABEL = b"sluiceway/pii-secret-fingerprint/v1"


def secret_fingerprint(secret: str) -> str:
    """The same for the same secret, on every machine."""
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).hexdigest()[:32]


def matches(fingerprint: str, secret: str | None) -> bool:
    """Whether ``secret`` is the key ``fingerprint`` was taken of (constant-time compare)."""
    if not secret:
        return False
    return hmac.compare_digest(fingerprint.encode(), secret_fingerprint(secret).encode())
