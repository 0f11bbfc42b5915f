"""faust's ``broker_credentials`` from the Kafka security settings (the same ones every
confluent-kafka client gets through sluiceway/kafka_security.py)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request

from aiokafka.abc import AbstractTokenProvider
from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from sluiceway.common.kafka_security import secret, ssl_context
from sluiceway.common.settings import KafkaSettings

TOKEN_TIMEOUT_S = 10.0
TOKEN_MARGIN_S = 60.0  # fetch a new token this long before the current one expires


def faust_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """``broker_credentials`` of a faust app; None for PLAINTEXT."""
    context = ssl_context(kafka)
    if not kafka.security_protocol.startswith("SASL_"):
        return SSLCredentials(context) if context is not None else None
    if kafka.sasl_mechanism == "OAUTHBEARER":
        return OAuthCredentials(oauth_cb=ClientCredentialsToken(kafka), ssl_context=context)
    return SASLCredentials(
        username=kafka.sasl_username,
        password=secret(kafka.sasl_password),
        ssl_context=context,
        mechanism=kafka.sasl_mechanism,
    )


class ClientCredentialsToken(AbstractTokenProvider):
    """An OAuth 2 client-credentials token from the configured endpoint, reused until a
    minute before it expires (what librdkafka's ``oidc`` method does for the other clients)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._token: str | None = None
        self._expires_at = 0.0

    async def token(self) -> str:
        if self._token is None or time.monotonic() > self._expires_at - TOKEN_MARGIN_S:
            self._token, lifetime = await asyncio.to_thread(self._fetch)
            self._expires_at = time.monotonic() + lifetime
        return str(self._token)

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self.kafka.oauth_client_id}
        form["client_secret"] = secret(self.kafka.oauth_client_secret)
        if self.kafka.oauth_scope:
            form["scope"] = self.kafka.oauth_scope
        request = urllib.request.Request(
            str(self.kafka.oauth_token_url),
            data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request, timeout=TOKEN_TIMEOUT_S) as answer:
            body = json.load(answer)
        return str(body["access_token"]), float(body.get("expires_in", 300))
