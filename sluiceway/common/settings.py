"""Connection settings shared by every Sluiceway service.

Each service builds the frozen objects it needs in its ``main()`` and passes them down;
nothing here reads the environment at import time. Every field can be set in the config file
(``kafka: {port: ...}``) or through an environment variable named after its prefix
(``SLUICEWAY_KAFKA_PORT``...), so the local stack and the clients agree on ports without
extra wiring; ``sluiceway.common.settings_base`` says which wins.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from sluiceway.common.redact import redact
from sluiceway.common.settings_base import SluicewaySettings

# The per-destination secret that keys PII hashes reaches a run's processor in this
# environment variable, so it is never written to a topic, a manifest or a log.
SECRET_ENV = "SLUICEWAY_PII_SECRET"
DAY_MS = 24 * 3600 * 1000
# Dead letters are for looking into a failure soon after it: a short retention bounds how
# long the raw bytes of an undecodable event stay in Kafka.
DLQ_RETENTION_MS, DLQ_RETENTION_MS_MAX = 3 * DAY_MS, 7 * DAY_MS


# The local stack's S3Proxy accepts this key pair (not a secret: it guards nothing else).
LOCAL_S3_KEYS = ("local-identity", "local-credential")
# Topic classes with their own durability settings (``<class>_replication``...).
TOPIC_CLASSES: tuple[str, ...] = ("change", "run", "control", "dlq", "notifications")

HOME_ENV = "SLUICEWAY_HOME"
DEV_HOME = ".sluiceway"


def default_home() -> Path:
    """Where state lives when ``SLUICEWAY_HOME`` is not set: the dev stack's ``.sluiceway/``
    in the working directory when there is one, else the per-user data directory."""
    local = Path.cwd() / DEV_HOME
    if local.is_dir():
        return local
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "sluiceway"


class KafkaSettings(SluicewaySettings):
    """Where the Kafka broker listens and how Sluiceway names and sizes its topics."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_KAFKA_", frozen=True)

    host: str = Field("127.0.0.1", description="Broker host; the local stack binds here.")
    port: int = Field(19092, description="Broker port (not 9092, to leave a user's own alone).")
    controller_port: int = Field(19093, description="KRaft controller port of the local stack.")
    bootstrap: str | None = Field(
        None, description="bootstrap.servers for clients; defaults to host:port."
    )
    topic_prefix: str = Field("sw.", description="Prefix of every topic Sluiceway creates.")
    partitions: int = Field(
        3,
        ge=1,
        description="Partitions of change and run topics. Capture places events by this "
        "number, runs by the topics' own count: keep them equal; choose it before the first "
        "snapshot (docs/topic-layout.md).",
    )
    spread: int = Field(
        1, ge=1, description="Partitions each tenant spreads over (docs/topic-layout.md)."
    )
    tenant_spread: dict[str, int] = Field(
        default_factory=dict,
        description="Per-tenant spread overriding kafka.spread, e.g. "
        '{"big-tenant": 6} (env: JSON). Set it before the tenant\'s first captured event: '
        "its events then keep one partition per key (docs/topic-layout.md).",
    )
    skew_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="sluiceway check warns when one partition of a change topic holds more "
        "than this share of that topic's records (an even share is 1/kafka.partitions; "
        "docs/topic-layout.md).",
    )
    skew_min_events: int = Field(
        10_000, ge=0, description="Change topics of fewer records than this skip the skew check."
    )
    tenant_index: Literal["auto", "always", "off"] = Field(
        "auto",
        description="The tenant offset index beside the change topics (docs/architecture.md): "
        "auto: capture keeps it and a run reads through it when that reads fewer records "
        "than scanning its partitions; always: every run reads through it (what the index "
        "does not cover is still scanned); off: capture does not keep it, runs scan.",
    )
    dlq_retention_ms: int = Field(
        DLQ_RETENTION_MS,
        ge=60_000,
        le=DLQ_RETENTION_MS_MAX,
        description="retention.ms of the dead-letter topics (1 minute to 7 days; default 3 days):"
        " an undecodable event is kept there as it came.",
    )

    # Durability per topic class; None: 3 replicas and min.insync.replicas 2 when the cluster
    # has at least three brokers, 1 and 1 otherwise (see ``durability``).
    change_replication: int | None = Field(None, ge=1, description="Change topics' replicas.")
    change_min_insync: int | None = Field(None, ge=1, description="Change topics' min ISR.")
    run_replication: int | None = Field(None, ge=1, description="Run topics' replicas.")
    run_min_insync: int | None = Field(None, ge=1, description="Run topics' min ISR.")
    control_replication: int | None = Field(None, ge=1, description="Control topics' replicas.")
    control_min_insync: int | None = Field(None, ge=1, description="Control topics' min ISR.")
    dlq_replication: int | None = Field(None, ge=1, description="Dead-letter topics' replicas.")
    dlq_min_insync: int | None = Field(None, ge=1, description="Dead-letter topics' min ISR.")
    notifications_replication: int | None = Field(
        None, ge=1, description="The notifications topic's replicas."
    )
    notifications_min_insync: int | None = Field(
        None, ge=1, description="The notifications topic's min ISR."
    )

    # How every client (confluent-kafka, faust's aiokafka, the admin clients) connects.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="security.protocol of every Kafka client."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = Field(
        "PLAIN", description="SASL mechanism, with SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_username: str | None = Field(None, description="SASL user (PLAIN, SCRAM).")
    sasl_password: SecretStr | None = Field(None, description="SASL password (PLAIN, SCRAM).")
    oauth_token_url: str | None = Field(None, description="OAUTHBEARER: the token endpoint.")
    oauth_client_id: str | None = Field(None, description="OAUTHBEARER: client id.")
    oauth_client_secret: SecretStr | None = Field(None, description="OAUTHBEARER: its secret.")
    oauth_scope: str | None = Field(None, description="OAUTHBEARER: scope asked for, if any.")
    ssl_ca: Path | None = Field(None, description="PEM CA bundle; the system's when unset.")
    ssl_cert: Path | None = Field(None, description="PEM client certificate (mutual TLS).")
    ssl_key: Path | None = Field(None, description="PEM private key of the client certificate.")
    ssl_key_password: SecretStr | None = Field(None, description="Password of that key.")
    ssl_check_hostname: bool = Field(True, description="Verify the broker's host name.")

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        needed: tuple[str, ...]
        if sasl and self.sasl_mechanism == "OAUTHBEARER":
            needed = ("oauth_token_url", "oauth_client_id", "oauth_client_secret")
        else:
            needed = ("sasl_username", "sasl_password") if sasl else ()
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(
                f"security_protocol={self.security_protocol} with {self.sasl_mechanism} "
                f"needs {', '.join(missing)}; expected them set"
            )
        if (self.ssl_cert is None) != (self.ssl_key is None):
            raise ValueError("ssl_cert and ssl_key go together; expected both or neither")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        files = [n for n in ("ssl_ca", "ssl_cert", "ssl_key") if getattr(self, n) is not None]
        if files and not tls:
            raise ValueError(
                f"{', '.join(files)} set with security_protocol={self.security_protocol}; "
                "expected SSL or SASL_SSL"
            )
        return self

    @model_validator(mode="after")
    def _min_insync_within_replicas(self) -> KafkaSettings:
        for cls in TOPIC_CLASSES:
            replicas = getattr(self, f"{cls}_replication")
            min_isr = getattr(self, f"{cls}_min_insync")
            if replicas is not None and min_isr is not None and min_isr > replicas:
                raise ValueError(
                    f"{cls}_min_insync={min_isr} exceeds {cls}_replication={replicas}; "
                    "expected at most the replication factor"
                )
        return self

    @property
    def servers(self) -> str:
        return self.bootstrap or f"{self.host}:{self.port}"

    def topic_class(self, topic: str) -> str | None:
        """The durability class of one of Sluiceway's topics; None for anyone else's."""
        if topic == self.notifications_topic:
            return "notifications"
        rest = topic.removeprefix(self.topic_prefix)
        if rest == topic:
            return None
        kind = rest.split(".", 1)[0]
        classes = {"cdc": "change", "index": "change", "run": "run", "control": "control"}
        return {**classes, "dlq": "dlq"}.get(kind)

    def durability(self, topic_class: str, brokers: int) -> tuple[int, int]:
        """(replication factor, min.insync.replicas) of a topic class on ``brokers`` brokers."""
        replicas = getattr(self, f"{topic_class}_replication", None)
        min_isr = getattr(self, f"{topic_class}_min_insync", None)
        if replicas is None:
            # as many as answer, up to 3: a topic first created while one broker of three is
            # down (a control topic's first write during a restart) keeps two copies, not one
            replicas = max(1, min(3, brokers))
        if min_isr is None:
            # one replica may be lost without stopping writes, as long as there is a spare
            min_isr = max(1, min(2, replicas - 1))
        return replicas, min_isr

    @field_validator("tenant_spread")
    @classmethod
    def _spreads_positive(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {t: n for t, n in value.items() if n < 1}
        if bad:
            tenant, n = next(iter(bad.items()))
            raise ValueError(f"tenant {tenant!r} has spread {n}; expected 1 or more partitions")
        return value

    def spread_of(self, tenant_id: str) -> int:
        """How many partitions this tenant's change events spread over."""
        return self.tenant_spread.get(tenant_id, self.spread)

    def cdc_topic(self, entity: str) -> str:
        return f"{self.topic_prefix}cdc.{entity}"

    def run_topic(self, etl_id: str) -> str:
        return f"{self.topic_prefix}run.{etl_id}"

    def control_topic(self, name: str) -> str:
        return f"{self.topic_prefix}control.{name}"

    def dlq_topic(self, stage: str) -> str:
        return f"{self.topic_prefix}dlq.{stage}"

    @property
    def notifications_topic(self) -> str:
        return f"{self.topic_prefix}notifications"


class PostgresSettings(SluicewaySettings):
    """The source database (a Jira-shaped schema with tenant_id on every table)."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_PG_", frozen=True)

    host: str = Field("127.0.0.1", description="Server host; the local stack binds here.")
    port: int = Field(15432, description="Server port (not 5432).")
    dbname: str = Field("sluiceway", description="Database holding the source tables.")
    user: str = Field("sluiceway", description="Role Sluiceway connects as.")
    password: SecretStr = Field(SecretStr("sluiceway"), description="That role's password.")
    catalog: Path | None = Field(
        None,
        description="Entity catalog file (YAML): the tables captured, their keys, tenant "
        "rule and columns; `sluiceway source discover` writes one and `sluiceway check` "
        "holds it against the database. Unset: the Jira-shaped demo's tables.",
    )

    def connect_kwargs(self, dbname: str | None = None) -> dict[str, Any]:
        """Keyword arguments of ``psycopg2.connect``: each value stays one value, whatever
        spaces, quotes or ``key=value`` text a password holds."""
        return {
            "host": self.host, "port": self.port, "dbname": dbname or self.dbname,
            "user": self.user, "password": self.password.get_secret_value(),
        }  # fmt: skip

    def dsn(self, dbname: str | None = None) -> str:
        """A libpq connection string with every value quoted; holds the password: never log it."""
        from psycopg2.extensions import make_dsn

        return str(make_dsn(**self.connect_kwargs(dbname)))


class S3Settings(SluicewaySettings):
    """The S3-compatible object store (S3Proxy in the local stack)."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_S3_", frozen=True)

    host: str = Field("127.0.0.1", description="S3Proxy host of the local stack.")
    port: int = Field(18080, description="S3Proxy port (not 8080).")
    endpoint: str | None = Field(None, description="Endpoint URL; defaults to http://host:port.")
    region: str = Field("us-east-1", description="Region sent in requests.")
    access_key: SecretStr | None = Field(
        None, description="Static access key id; none: the AWS default credential chain."
    )
    secret_key: SecretStr | None = Field(None, description="Static secret key.")
    session_token: SecretStr | None = Field(None, description="Session token of temporary keys.")
    role_arn: str | None = Field(None, description="IAM role to assume with those credentials.")
    role_session_name: str = Field("sluiceway", description="Session name of the assumed role.")
    external_id: str | None = Field(None, description="External id the role may require.")
    addressing: Literal["auto", "path", "virtual"] = Field(
        "auto", description="Bucket addressing: path-style, virtual-hosted, or the client's."
    )
    sse: Literal["AES256", "aws:kms"] | None = Field(
        None, description="Server-side encryption of every object written (SSE-S3 or SSE-KMS)."
    )
    kms_key_id: str | None = Field(None, description="KMS key id or ARN for sse=aws:kms.")
    bucket: str = Field("sluiceway", description="Bucket the local stack creates.")

    @model_validator(mode="after")
    def _complete(self) -> S3Settings:
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("access_key and secret_key go together; expected both or neither")
        if self.session_token is not None and self.access_key is None:
            raise ValueError("session_token needs access_key and secret_key")
        if self.kms_key_id is not None and self.sse != "aws:kms":
            raise ValueError(f"kms_key_id needs sse=aws:kms, not sse={self.sse}")
        return self

    @property
    def endpoint_url(self) -> str:
        return self.endpoint or f"http://{self.host}:{self.port}"

    def static_keys(self) -> tuple[str, str] | None:
        """The key pair to sign with; None: the AWS default credential chain (environment,
        shared profile, web identity, container or instance role). Without an endpoint
        (the local stack's S3Proxy) and without keys, the local stack's own keys."""
        if self.access_key is not None and self.secret_key is not None:
            return self.access_key.get_secret_value(), self.secret_key.get_secret_value()
        if self.endpoint is None:
            return LOCAL_S3_KEYS
        return None


class StackSettings(SluicewaySettings):
    """Where Sluiceway keeps state (the local stack's data, jars and logs, run logs, pid
    files) and how the local stack runs."""

    model_config = SettingsConfigDict(
        env_prefix="SLUICEWAY_STACK_", frozen=True, populate_by_name=True
    )

    home: Path = Field(
        default_factory=default_home,
        # SLUICEWAY_STACK_HOME is the name this setting had before it held all state.
        validation_alias=AliasChoices(HOME_ENV, "SLUICEWAY_STACK_HOME"),
        description="Folder for all state: stack data, jars and logs, run logs, pid files. "
        "Default: ./.sluiceway when it exists (the dev stack's), else the per-user data "
        "directory ($XDG_DATA_HOME/sluiceway or ~/.local/share/sluiceway).",
    )
    kafka_heap: str = Field("768m", description="-Xmx of the Kafka JVM.")
    kafka_brokers: int = Field(
        1, ge=1, le=9, description="Kafka nodes (combined broker+controller) on loopback."
    )
    kafka_sasl_ssl: bool = Field(
        False, description="Add a SASL_SSL listener with SCRAM users and a generated test CA."
    )
    start_timeout_s: float = Field(120.0, description="How long `stack up` waits per server.")

    @classmethod
    def for_dev_stack(cls) -> StackSettings:
        """The settings of `stack` and `demo`: home is ./.sluiceway here unless it is set."""
        settings = cls()
        if "home" in settings.model_fields_set:
            return settings
        return settings.model_copy(update={"home": Path.cwd() / DEV_HOME})


def state_home() -> Path:
    """Where Sluiceway keeps state (``SLUICEWAY_HOME``), read when called."""
    return StackSettings().home


def _settings_classes(base: type[BaseSettings] = BaseSettings) -> list[type[BaseSettings]]:
    found = []
    for cls in base.__subclasses__():
        found += [cls, *_settings_classes(cls)]
    return found


def settings_problem(exc: ValidationError) -> str | None:
    """One line naming each bad environment variable, its value and what is expected, when
    ``exc`` comes from building a settings class; None for any other validation error."""
    classes = [c for c in _settings_classes() if c.__name__ == exc.title]
    if not classes:
        return None
    prefix = str(classes[0].model_config.get("env_prefix", ""))
    problems = []
    for error in exc.errors():
        name = f"{prefix}{'_'.join(str(part) for part in error['loc'])}".upper()
        found = error.get("input")
        shown = f"={redact(repr(found))}" if isinstance(found, str | int | float) else ""
        if _is_secret(classes[0], error["loc"]):
            shown = ""  # not even masked: its length and shape are the secret's too
        problems.append(f"{name}{shown}: {redact(error['msg'].removeprefix('Value error, '))}")
    return "bad setting " + "; ".join(problems)


def _is_secret(cls: type[BaseSettings], loc: tuple[int | str, ...]) -> bool:
    field = cls.model_fields.get(str(loc[0])) if loc else None
    return field is not None and "SecretStr" in str(field.annotation)


def to_env(settings: BaseSettings) -> dict[str, str]:
    """The environment variables that rebuild ``settings`` in a child process."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        # pydantic-settings reads complex fields (dicts, lists) from the environment as JSON
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"{prefix}{name}".upper()] = text
    return env
