"""The control API application: services, error mapping, auth, and the scheduler's lifetime.

``create_app`` takes every dependency in ``Services`` so that a test can build the app on
its own Kafka topic prefix and destination; nothing here reads the environment.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from sluiceway import __version__
from sluiceway.api.auth import DEFAULT_MAX_BODY_BYTES, BearerAuth
from sluiceway.api.config_store import KafkaStore, KeyValueStore
from sluiceway.api.destinations import (
    DestinationNotAllowedError,
    allowed_destination,
    allowed_spec,
    default_roots,
    parse_roots,
)
from sluiceway.api.limits import BodyLimit
from sluiceway.api.models import Health
from sluiceway.api.scheduler import Scheduler
from sluiceway.common.errors import ConfigError, RunConflictError, TransientError
from sluiceway.common.redact import redact
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.common.spec import RunSpec
from sluiceway.common.spec_errors import SpecError
from sluiceway.control.runner import Workers, start_run

TITLE = "Sluiceway control API"
DOCS_URL = "/docs"
OPENAPI_URL = "/openapi.json"
# The probes and the scrape go without the token: the kubelet and Prometheus send none, and
# these answer only up/down and counters, never a run, a tenant or a setting.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
PUBLIC_PATHS = PROBE_PATHS | {DOCS_URL, f"{DOCS_URL}/oauth2-redirect", OPENAPI_URL}


@dataclass(frozen=True)
class Services:
    """What the routes work with; ``build`` wires the Kafka-backed stores."""

    kafka: KafkaSettings
    s3: S3Settings
    token: SecretStr
    config: KeyValueStore
    scheduler: Scheduler
    roots: tuple[str, ...] = ()  # where runs may write; () means default_roots(s3)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def build(
        cls, kafka: KafkaSettings, s3: S3Settings, token: SecretStr, *, roots: str = "",
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> Services:  # fmt: skip
        allowed = parse_roots(roots, s3)

        # A stored feed or schedule is checked at each run, before its lake is even opened:
        # the roots may have changed since it was stored.
        def start(spec: RunSpec) -> tuple[RunRecord, Workers | None]:
            return start_run(allowed_spec(spec, allowed), kafka, s3)

        def chain_exists(destination: str) -> bool:
            allowed_destination(destination, allowed)
            return scheduler.has_latest_manifest(destination)

        config = KafkaStore(kafka, "config")
        scheduler = Scheduler(
            kafka, s3, KafkaStore(kafka, "schedules"), config, starter=start,
            chain_exists=chain_exists,
        )  # fmt: skip
        return cls(kafka, s3, token, config, scheduler, allowed, max_body_bytes)

    @property
    def allowed_roots(self) -> tuple[str, ...]:
        return self.roots or default_roots(self.s3)


class ApiError(Exception):
    """An answer other than 2xx with a one-line reason: the routes raise it, a handler renders."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def error_response(
    status: int, message: str, problems: Sequence[tuple[str, str]] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if problems is not None:
        body["problems"] = [{"field": f, "message": m} for f, m in problems]
    return JSONResponse(body, status_code=status)


def _field(loc: Sequence[str | int]) -> str:
    """A pydantic loc as the run spec writes field paths: ``tenants[0]``, ``body`` dropped."""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path") else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.isidentifier():
            out += f"[{json.dumps(part)}]"  # a key of any text stays one quoted line
        else:
            out += f".{part}" if out else part
    return out


def _validation_problems(exc: RequestValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors():
        message = redact(str(error.get("msg", "invalid")).removeprefix("Value error, "))
        problems.append((_field(tuple(error.get("loc", ()))), message))
    return problems


def _install_handlers(app: FastAPI) -> None:
    async def spec_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SpecError)
        return error_response(422, str(exc), exc.problems)

    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = _validation_problems(exc)
        joined = "; ".join(f"{f}: {m}" if f else m for f, m in problems)
        return error_response(422, f"invalid request: {joined}", problems)

    async def sluiceway_error(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ApiError):
            return error_response(exc.status, exc.message)
        status = 409 if isinstance(exc, RunConflictError) else 400
        if isinstance(exc, DestinationNotAllowedError):
            status = 403
        if isinstance(exc, TransientError):
            status = 503  # the stack is down or slow: worth retrying later
        return error_response(status, " ".join(str(exc).split()))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        response = error_response(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    async def kafka_error(request: Request, exc: Exception) -> JSONResponse:
        servers = get_services(request).kafka.servers
        reason = exc.args[0] if exc.args else exc
        return error_response(503, f"Kafka at {servers} failed the request ({reason}); retry")

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Not logged here: the server re-raises it after this answer and logs the traceback.
        return error_response(500, "internal error; see the server's log")

    app.add_exception_handler(SpecError, spec_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    for kind in (ApiError, ConfigError, TransientError):
        app.add_exception_handler(kind, sluiceway_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(KafkaException, kafka_error)
    app.add_exception_handler(Exception, unexpected)


def _health_routes(app: FastAPI, services: Services) -> None:
    @app.get("/healthz", response_model=Health, tags=["Health"])
    def healthz() -> Health:
        """Liveness: answers without a token and without touching the stack."""
        return Health(status="ok", version=__version__)

    @app.get("/readyz", tags=["Health"], responses={503: {"description": "Not ready."}})
    def readyz() -> JSONResponse:
        """Readiness: the scheduler runs and its last probe found Kafka answering."""
        reason = services.scheduler.not_ready()
        if reason is not None:
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["Health"], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus exposition of this process's registry."""
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def create_app(services: Services) -> FastAPI:
    """The control API over ``services``; the scheduler runs while the app's lifespan does."""
    # Imported here: the routers import this module for Services and ApiError.
    from sluiceway.api import datapipeline, runs

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        services.scheduler.start()
        try:
            yield
        finally:
            services.scheduler.stop()

    app = FastAPI(
        title=TITLE,
        version=__version__,
        description="Start, follow and cancel export runs; Atlassian Data pipeline compatible.",
        docs_url=DOCS_URL,
        openapi_url=OPENAPI_URL,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    _install_handlers(app)
    # the last added runs first: a caller without the token is refused before its body is read
    app.add_middleware(BodyLimit, max_bytes=services.max_body_bytes)
    app.add_middleware(BearerAuth, token=services.token, public=PUBLIC_PATHS)

    _health_routes(app, services)

    datapipeline.install(app, services)
    app.include_router(runs.router)
    return app
