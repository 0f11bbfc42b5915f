"""One set of security settings, spelled for librdkafka and for faust's aiokafka."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.auth import OAuthCredentials, SASLCredentials
from pydantic import ValidationError

from sluiceway.common.kafka_io import client_config
from sluiceway.common.kafka_security import confluent_security, ssl_context
from sluiceway.common.settings import KafkaSettings, settings_problem
from sluiceway.processors.credentials import faust_credentials


def test_plaintext_by_default() -> None:
    kafka = KafkaSettings()
    assert confluent_security(kafka) == {"security.protocol": "PLAINTEXT"}
    assert faust_credentials(kafka) is None and ssl_context(kafka) is None


def test_sasl_ssl_with_scram_for_both_libraries(tmp_path: Path) -> None:
    ca = Path(ssl.get_default_verify_paths().openssl_cafile)
    kafka = KafkaSettings(
        bootstrap="b1:9096,b2:9096", security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512", sasl_username="sw", sasl_password="pw:1",
        ssl_ca=ca if ca.is_file() else None,
    )  # fmt: skip
    conf = client_config(kafka)
    assert conf["bootstrap.servers"] == "b1:9096,b2:9096"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("sw", "pw:1")
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    creds = faust_credentials(kafka)
    assert isinstance(creds, SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert (creds.username, creds.password) == ("sw", "pw:1")
    assert "pw:1" not in repr(kafka) and "pw:1" not in repr(creds)


def test_oauthbearer_uses_the_token_endpoint() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
        oauth_token_url="https://idp/token", oauth_client_id="sw", oauth_client_secret="s",
        oauth_scope="kafka",
    )  # fmt: skip
    conf = confluent_security(kafka)
    assert conf["sasl.oauthbearer.method"] == "oidc"
    assert conf["sasl.oauthbearer.token.endpoint.url"] == "https://idp/token"
    assert conf["sasl.oauthbearer.client.secret"] == "s"
    assert conf["sasl.oauthbearer.scope"] == "kafka"
    assert isinstance(faust_credentials(kafka), OAuthCredentials)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u"}, "needs sasl_password"),
        ({"SECURITY_PROTOCOL": "SSL", "SSL_CERT": "/c.pem"}, "ssl_cert and ssl_key go together"),
        ({"SSL_CA": "/ca.pem"}, "ssl_ca set with security_protocol=PLAINTEXT"),
        ({"SECURITY_PROTOCOL": "TLS"}, "SLUICEWAY_KAFKA_SECURITY_PROTOCOL='TLS'"),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "GSSAPI"}, "SASL_MECHANISM"),
    ],
)
def test_incomplete_security_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"SLUICEWAY_KAFKA_{name}", value)
    with pytest.raises(ValidationError) as caught:
        KafkaSettings()
    line = settings_problem(caught.value)
    assert line is not None and expected in line and "\n" not in line


def test_a_bad_password_value_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_KAFKA_SASL_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("SLUICEWAY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError) as caught:
        KafkaSettings()
    line = settings_problem(caught.value)
    assert line is not None and "hunter2" not in line
