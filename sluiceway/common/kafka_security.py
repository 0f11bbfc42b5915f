"""One set of Kafka security settings, spelled for each client library Sluiceway uses.

confluent-kafka (capture, sinks, admin clients, the control plane, benchmarks) takes
librdkafka properties; faust's aiokafka transport (processors) takes credentials objects
with an ``ssl.SSLContext`` (processors/credentials.py). Both are built from the same
``KafkaSettings`` fields, so every client connects the same way. Secrets stay in
``SecretStr`` until the client is built.
"""

from __future__ import annotations

import ssl
from typing import Any

from sluiceway.common.settings import KafkaSettings


def confluent_security(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka properties for the configured security.protocol, SASL and TLS."""
    conf: dict[str, Any] = {"security.protocol": kafka.security_protocol}
    if kafka.security_protocol.startswith("SASL_"):
        conf["sasl.mechanism"] = kafka.sasl_mechanism
        conf.update(_confluent_sasl(kafka))
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        conf["ssl.endpoint.identification.algorithm"] = (
            "https" if kafka.ssl_check_hostname else "none"
        )
        optional = {
            "ssl.ca.location": kafka.ssl_ca,
            "ssl.certificate.location": kafka.ssl_cert,
            "ssl.key.location": kafka.ssl_key,
            "ssl.key.password": secret(kafka.ssl_key_password),
        }
        conf.update({k: str(v) for k, v in optional.items() if v is not None})
    return conf


def _confluent_sasl(kafka: KafkaSettings) -> dict[str, Any]:
    if kafka.sasl_mechanism != "OAUTHBEARER":
        return {"sasl.username": kafka.sasl_username, "sasl.password": secret(kafka.sasl_password)}
    conf = {
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": kafka.oauth_token_url,
        "sasl.oauthbearer.client.id": kafka.oauth_client_id,
        "sasl.oauthbearer.client.secret": secret(kafka.oauth_client_secret),
    }
    if kafka.oauth_scope:
        conf["sasl.oauthbearer.scope"] = kafka.oauth_scope
    return conf


def secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of faust's aiokafka clients; None without TLS."""
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_ca) if kafka.ssl_ca else None)
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_cert is not None and kafka.ssl_key is not None:
        context.load_cert_chain(
            str(kafka.ssl_cert), str(kafka.ssl_key), secret(kafka.ssl_key_password)
        )
    return context
