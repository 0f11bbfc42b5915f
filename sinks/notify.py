"""The optional completion webhook: POST a run's notice (the JSON of ``sw.notifications``).

Delivery is best effort with exponential backoff: the manifest in the lake is the record of
a complete run, so a webhook that stays down is logged and counted but never fails the run.
The bearer token is sent only in the request header, and URLs are logged without their
credentials or query string.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sluiceway.sinks import metrics
from sluiceway.sinks.guard_config import GuardSettings

log = logging.getLogger("sluiceway.sink")

# (url, body, token or None, timeout in seconds) -> HTTP status; raises OSError on failure
Send = Callable[[str, bytes, str | None, float], int]


def backoff_delays(
    attempts: int, first_s: float = 0.5, max_s: float = 30.0, factor: float = 2.0
) -> list[float]:
    """Waits between ``attempts`` tries: first_s, doubling, each capped at max_s."""
    return [min(max_s, first_s * factor**i) for i in range(max(0, attempts - 1))]


def safe_url(url: str) -> str:
    """The URL without user:password@ and without its query, which may hold secrets."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    _, colon, port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")
    if colon:  # the port as written: showing a URL never fails on it
        netloc = f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # a redirect would carry the bearer token to another address: treat it as a failure
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def post_json(url: str, body: bytes, token: str | None, timeout_s: float) -> int:
    """One POST; raises OSError (urllib's errors included) unless the answer is 2xx."""
    headers = {"Content-Type": "application/json", "User-Agent": "sluiceway-sink"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with _OPENER.open(request, timeout=timeout_s) as response:
        status = int(response.status)
    if not 200 <= status < 300:
        raise OSError(f"HTTP {status}")
    return status


def _why(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return " ".join(str(exc.reason).split())[:200]
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _attempt(send: Send, url: str, body: bytes, token: str | None, timeout_s: float) -> str | None:
    """One try; None on success, else why it failed (one line, no secrets)."""
    metrics.WEBHOOK_ATTEMPTS.inc()
    try:
        send(url, body, token, timeout_s)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # urllib's are OSErrors
        metrics.WEBHOOK_FAILURES.inc()
        return _why(exc)
    return None


def deliver(
    note: dict[str, Any],
    settings: GuardSettings,
    *,
    send: Send = post_json,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """POST ``note`` to the webhook, retrying with backoff; True once it answered 2xx."""
    if settings.webhook_url is None:
        return False
    url, shown, etl_id = settings.webhook_url, safe_url(settings.webhook_url), note.get("etl_id")
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    body = json.dumps(note).encode()
    delays = backoff_delays(
        settings.webhook_max_attempts, settings.webhook_backoff_s, settings.webhook_backoff_max_s
    )
    deadline = clock() + settings.webhook_deadline_s
    for attempt in range(1, settings.webhook_max_attempts + 1):
        timeout = max(0.1, min(settings.webhook_timeout_s, deadline - clock()))
        failure = _attempt(send, url, body, token, timeout)
        if failure is None:
            log.info("webhook %s got the notice of run %s (attempt %d)", shown, etl_id, attempt)
            return True
        wait = delays[attempt - 1] if attempt <= len(delays) else None
        if wait is None or clock() + wait >= deadline:
            log.warning("webhook attempt %d to %s failed: %s", attempt, shown, failure)
            break
        log.warning(
            "webhook attempt %d to %s failed: %s; retrying in %.1fs", attempt, shown, failure, wait
        )
        sleep(wait)
    metrics.WEBHOOK_UNDELIVERED.inc()
    log.error(
        "webhook %s did not get the notice of run %s after %d attempts; the run is complete "
        "(its manifest is _runs/%s.json)",
        shown, etl_id, attempt, etl_id,
    )  # fmt: skip
    return False
