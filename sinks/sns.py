"""Completion notices on Amazon SNS, as Enterprise Insights sends them.

Each completed run publishes one message whose JSON carries the directory the run's files
are in (``s3_path``), the run's ``etl_id`` and its ``export_type`` (``full`` or ``delta``),
beside the fields of the Kafka notice; the same two ids go in message attributes so
subscriptions can filter on them. The endpoint, region and credentials are settings, so
any SNS-compatible service works. Like the webhook this is retried with backoff and never
fails the run: the manifest was written before, and a sink that restarts after a crash
publishes again (at least once).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from sluiceway.common.runs import etl_id_time
from sluiceway.common.settings_base import SluicewaySettings
from sluiceway.lake import layout
from sluiceway.lake.manifest import RunManifest
from sluiceway.sinks.notify import backoff_delays

log = logging.getLogger("sluiceway.sink")

Publish = Callable[[dict[str, Any]], Any]  # boto3's SNS publish(**kwargs)


class SnsSettings(SluicewaySettings):
    """Where the sink publishes completion notices on SNS; no topic: nothing is sent."""

    model_config = SettingsConfigDict(
        env_prefix="SLUICEWAY_SINK_SNS_", frozen=True, hide_input_in_errors=True
    )

    topic_arn: str | None = Field(None, description="Topic to publish to; None sends nothing.")
    endpoint_url: str | None = Field(None, description="SNS endpoint; None: AWS's for region.")
    region: str = Field("us-east-1", description="AWS region of the topic.")
    access_key_id: SecretStr | None = Field(None, description="None: boto3's default chain.")
    secret_access_key: SecretStr | None = Field(None, description="Never logged.")
    max_attempts: int = Field(6, ge=1, description="Attempts before giving up.")
    backoff_s: float = Field(0.5, gt=0, description="Wait after the first failure.")
    backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between tries.")
    timeout_s: float = Field(10.0, gt=0, description="Connect and read timeout of one try.")


def run_directory(manifest: RunManifest) -> str:
    """The directory holding the run's files: ``.../full-export`` or ``.../delta-export/<day>``
    for the lake layout (also when the run wrote nothing), the job folder for Data pipeline's."""
    destination = manifest.spec.destination.rstrip("/")
    paths = manifest.paths()
    if paths and "/daily-export/" not in paths[0]:
        relative = layout.parent(paths[0])
    else:
        day = etl_id_time(manifest.etl_id)
        if manifest.type == "full":
            table_dir = layout.full_table_dir(day, "t", manifest.etl_id)
        else:
            full = date.fromisoformat(manifest.full_export_date or f"{day:%Y-%m-%d}")
            table_dir = layout.delta_table_dir(full, day, "t", manifest.etl_id)
        relative = layout.parent(layout.parent(table_dir))  # without <table>/<etl_id>
    return f"{destination}/{relative}" if relative else destination


def message(manifest: RunManifest, note: dict[str, Any]) -> dict[str, Any]:
    return {
        **note,
        "s3_path": run_directory(manifest),
        "etl_id": manifest.etl_id,
        "export_type": manifest.type,
    }


def client_publish(settings: SnsSettings) -> Publish:
    """boto3's publish for ``settings``, one try per call (retries are ours)."""
    import boto3
    from botocore.config import Config

    secret = settings.secret_access_key
    client = boto3.client(
        "sns",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id.get_secret_value()
        if settings.access_key_id
        else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=settings.timeout_s,
            read_timeout=settings.timeout_s,
        ),
    )
    return lambda kwargs: client.publish(**kwargs)


def publish(
    manifest: RunManifest,
    note: dict[str, Any],
    settings: SnsSettings,
    *,
    send: Publish | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Publish the run's notice, retrying with backoff; True once SNS accepted it."""
    if settings.topic_arn is None:
        return False
    body = message(manifest, note)
    request = {
        "TopicArn": settings.topic_arn,
        "Subject": f"Sluiceway {body['export_type']} export {body['etl_id']} complete",
        "Message": json.dumps(body),
        "MessageAttributes": {
            "etl_id": {"DataType": "String", "StringValue": body["etl_id"]},
            "export_type": {"DataType": "String", "StringValue": body["export_type"]},
        },
    }
    delays = backoff_delays(settings.max_attempts, settings.backoff_s, settings.backoff_max_s)
    for attempt in range(1, settings.max_attempts + 1):
        try:
            (send or client_publish(settings))(request)
        except Exception as exc:  # botocore raises many kinds; each is one failed try
            why = " ".join(str(exc).split())[:200] or type(exc).__name__
            if attempt > len(delays):
                log.warning("SNS attempt %d failed: %s", attempt, why)
                break
            log.warning("SNS attempt %d failed: %s; retrying in %.1fs", attempt, why,
                        delays[attempt - 1])  # fmt: skip
            sleep(delays[attempt - 1])
            continue
        log.info("SNS got the notice of run %s (attempt %d)", body["etl_id"], attempt)
        return True
    log.error(
        "SNS did not get the notice of run %s after %d attempts; the run is complete (its "
        "manifest is _runs/%s.json)", body["etl_id"], settings.max_attempts, body["etl_id"],
    )  # fmt: skip
    return False
