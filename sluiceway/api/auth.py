"""Bearer-token auth of the control API.

The check is ASGI middleware rather than a route dependency so that it runs before anything
else: a caller without the token learns nothing, not even whether a path exists or whether
its body would have parsed. The routes still declare ``bearer_scheme`` so that the OpenAPI
document shows the security scheme.
"""

from __future__ import annotations

import hmac

from fastapi.security import HTTPBearer
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import settings_problem
from sluiceway.common.settings_base import SluicewaySettings

TOKEN_ENV = "SLUICEWAY_API_TOKEN"
MIN_TOKEN_CHARS = 32
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # a run spec is a few kB; this leaves ample room

bearer_scheme = HTTPBearer(
    auto_error=False,  # the middleware answers 401; this only documents the scheme
    scheme_name="bearer",
    description=f"The token the server was started with ({TOKEN_ENV}).",
)


class ApiSettings(SluicewaySettings):
    """Settings of ``sluiceway serve``; built in its command, never at import."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_API_", frozen=True)

    token: SecretStr = Field(
        description=f"Bearer token every protected request must send; at least "
        f"{MIN_TOKEN_CHARS} characters, surrounding whitespace ignored."
    )
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES, ge=1, description="Largest request body accepted (413 beyond)."
    )
    roots: str = Field(
        "",
        description="Comma-separated directories and s3://bucket[/prefix] URLs under which "
        "the API may write runs and the export path; empty: the lake folder of the state "
        "home and the configured bucket.",
    )

    @field_validator("token")
    @classmethod
    def _strong(cls, value: SecretStr) -> SecretStr:
        # Stripped: a token pasted with a newline would otherwise never match any request.
        token = value.get_secret_value().strip()
        if not token:
            raise ValueError("must not be blank")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"is shorter than {MIN_TOKEN_CHARS} characters; generate one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return SecretStr(token)


def load_api_settings() -> ApiSettings:
    """ApiSettings from the environment; one clear line (never the token) when one is bad."""
    try:
        return ApiSettings()
    except ValidationError as exc:
        if any(e["type"] == "missing" and e["loc"] == ("token",) for e in exc.errors()):
            raise ConfigError(
                f"{TOKEN_ENV} is not set; the control API needs a bearer token"
            ) from None
        raise ConfigError(settings_problem(exc) or "bad SLUICEWAY_API_* setting") from None


def token_matches(header: bytes | None, token: SecretStr) -> bool:
    """Whether an Authorization header carries ``Bearer <token>``, in constant time."""
    if not header:
        return False
    scheme, _, given = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())


class BearerAuth:
    """Answers 401 to every request but those to ``public`` paths without the right token.

    WebSocket handshakes need the token too (no path is public for them): one refused
    before it is accepted is closed, which the server answers with HTTP 403.
    """

    def __init__(self, app: ASGIApp, token: SecretStr, public: frozenset[str]) -> None:
        self.app = app
        self.token = token
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or (kind == "http" and scope["path"] in self.public):
            await self.app(scope, receive, send)  # lifespan events, probes, the OpenAPI docs
            return
        header = dict(scope["headers"]).get(b"authorization")
        if token_matches(header, self.token):
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await receive()  # the websocket.connect event, answered with a refusal
            await send({"type": "websocket.close", "code": 1008, "reason": "bearer token"})
            return
        # Never echo what was sent: a near-miss token must not end up in a client log.
        error = "invalid bearer token" if header else "missing bearer token"
        response = JSONResponse(
            {"error": f"{error}; send Authorization: Bearer <token> ({TOKEN_ENV} of the server)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
