"""Masking secrets in text a user or a log will see.

Error messages quote the values they refuse, and a value may carry a secret: a URL with
``user:password@`` or a token in its query, a libpq connection string with ``password=``.
``redact`` replaces those parts with ``***`` and leaves the rest, so the message still says
which value was wrong.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://[userinfo@]rest, up to whitespace or a quote that ends a repr
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>[^\s'\"<>]+)")
# key=value of a libpq connection string, the value quoted ('a b') or not
_DSN_SECRET = re.compile(
    r"(?P<key>\b(?:password|passwd|sslpassword|sslkey)\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'?|\S+)",
    re.IGNORECASE,
)
_QUERY_VALUE = re.compile(r"(?P<key>[?&;][^=&#;\s]*=)[^&#;\s]*")


def _mask_url(match: re.Match[str]) -> str:
    rest = match["rest"]
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = f"{MASK}@{authority.rpartition('@')[2]}"
    rest = authority + slash + tail
    if "?" in rest:
        head, _, query = rest.partition("?")
        rest = head + _QUERY_VALUE.sub(lambda m: f"{m['key']}{MASK}", "?" + query)
    return match["scheme"] + rest


def redact(text: str) -> str:
    """``text`` with URL credentials, URL query values and connection-string passwords
    replaced by ``***``."""
    masked = _URL.sub(_mask_url, text)
    return _DSN_SECRET.sub(lambda m: f"{m['key']}{MASK}", masked)


def pg_error_line(exc: BaseException) -> str:
    """A psycopg2 error as one line that cannot quote the connection string it was given.

    libpq quotes the word it stumbled on when a connection string does not parse, and that
    word may be part of a password: such errors are described, not shown.
    """
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if first.startswith(("invalid dsn", 'missing "="', "invalid connection option")) or (
        "connection info string" in first or "unterminated quoted string" in first
    ):
        return (
            "the connection string does not parse (it is not shown: it may hold a password); "
            "expected key=value pairs or a postgresql:// URL"
        )
    return redact(" ".join(first.split()))
