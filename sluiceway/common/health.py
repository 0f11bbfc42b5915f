"""Health and metrics endpoints of a long-running worker, on its metrics port.

``/metrics`` is prometheus_client's WSGI app; ``/healthz`` (liveness) answers 200 while the
worker's main loop reported progress (``beat``) within the window, and ``/readyz``
(readiness) 200 while the worker says it is connected and working (``ready``). Both bodies
are JSON. One ``Health`` per process, like the Prometheus registry it serves beside.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sluiceway.common.settings_base import SluicewaySettings

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class HealthSettings(SluicewaySettings):
    """Where the endpoints listen and how long a silent main loop still counts as alive."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_HEALTH_", frozen=True)

    host: str = Field(
        "127.0.0.1",
        description="Address of the metrics/health server; 0.0.0.0 in a container so probes "
        "and Prometheus reach it.",
    )
    live_window_s: float = Field(
        60.0, gt=0, description="/healthz fails once the main loop is silent this long."
    )


class Health:
    """What a worker's probes report: its last progress and whether it is ready."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.window_s = HealthSettings.model_fields["live_window_s"].default
        self._last_beat = clock()
        self._ready = False
        self._reason = "starting"
        self._lock = threading.Lock()

    def beat(self) -> None:
        """The main loop made progress (or waited on purpose): it is alive."""
        self._last_beat = self.clock()

    def ready(self, ready: bool, reason: str = "") -> None:
        with self._lock:
            self._ready, self._reason = ready, reason

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        silent = self.clock() - self._last_beat
        alive = silent <= self.window_s
        return alive, {
            "status": "ok" if alive else "stalled",
            "silent_s": round(silent, 3),
            "window_s": self.window_s,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            ready, reason = self._ready, self._reason
        body: dict[str, Any] = {"status": "ready" if ready else "not ready"}
        if reason:
            body["reason"] = reason
        return ready, body


HEALTH = Health()


def _json(start_response: StartResponse, ok: bool, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    status = "200 OK" if ok else "503 Service Unavailable"
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    )
    return [payload]


def wsgi_app(health: Health, registry: CollectorRegistry = REGISTRY) -> WsgiApp:
    """/healthz and /readyz from ``health``; everything else is the Prometheus exposition."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _json(start_response, *health.liveness())
        if path == "/readyz":
            return _json(start_response, *health.readiness())
        return metrics(environ, start_response)

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight never holds the worker's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the worker's log."""


def serve(
    port: int | None,
    settings: HealthSettings | None = None,
    health: Health = HEALTH,
    registry: CollectorRegistry = REGISTRY,
) -> WSGIServer | None:
    """Serve /metrics, /healthz and /readyz on ``port`` from a daemon thread; None: nothing.

    Port 0 takes a free port: the server's ``server_port`` tells which."""
    if port is None:
        return None
    settings = settings or HealthSettings()
    health.window_s = settings.live_window_s
    health.beat()  # the window starts when the worker does
    server = make_server(
        settings.host,
        port,
        wsgi_app(health, registry),
        server_class=_Server,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
