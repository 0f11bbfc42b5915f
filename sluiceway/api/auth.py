"""Bearer-token auth of the control API.

The check is ASGI middleware rather than a route dependency so that it runs before anything
else: a caller without the token learns nothing, not even whether a path exists or whether
its body would have parsed. The routes still declare ``bearer_scheme`` so that the OpenAPI
document shows the security scheme.
"""

from __future__ import annotations

import hmac

from fastapi.security import HTTPBearer
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sluiceway.errors import ConfigError
from sluiceway.settings_base import SluicewaySettings

TOKEN_ENV = "SLUICEWAY_API_TOKEN"

bearer_scheme = HTTPBearer(
    auto_error=False,  # the middleware answers 401; this only documents the scheme
    scheme_name="bearer",
    description=f"The token the server was started with ({TOKEN_ENV}).",
)


class ApiSettings(SluicewaySettings):
    """Settings of ``sluiceway serve``; built in its command, never at import."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_API_", frozen=True)

    token: SecretStr = Field(description="Bearer token every protected request must send.")


def load_api_settings() -> ApiSettings:
    """ApiSettings from the environment; one clear line when the token is missing."""
    try:
        settings = ApiSettings()
    except ValidationError:
        settings = None
    if settings is None or not settings.token.get_secret_value().strip():
        raise ConfigError(f"{TOKEN_ENV} is not set; the control API needs a bearer token")
    return settings


def token_matches(header: bytes | None, token: SecretStr) -> bool:
    """Whether an Authorization header carries ``Bearer <token>``, in constant time."""
    if not header:
        return False
    scheme, _, given = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())


class BearerAuth:
    """Answers 401 to every request but those to ``public`` paths without the right token."""

    def __init__(self, app: ASGIApp, token: SecretStr, public: frozenset[str]) -> None:
        self.app = app
        self.token = token
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization")
        if token_matches(header, self.token):
            await self.app(scope, receive, send)
            return
        # Never echo what was sent: a near-miss token must not end up in a client log.
        error = "invalid bearer token" if header else "missing bearer token"
        response = JSONResponse(
            {"error": f"{error}; send Authorization: Bearer <token> ({TOKEN_ENV} of the server)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
