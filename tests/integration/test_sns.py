"""Completion notices on SNS: a real SNS-compatible server (moto's server mode, started here
on 127.0.0.1) with an SQS queue subscribed to the topic, as a user's subscriber would be.

One test drives ``sluiceway.sinks.sns.publish`` (retries, giving up); the other runs real exports
(full, then delta) through the stack and receives one message per completed run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.sinks import sns
from tests.conftest import Cli, settings_env
from tests.manifests import run_manifest
from tests.net import free_port
from tests.polling import wait_for

pytestmark = pytest.mark.integration
REGION = "eu-central-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True)
class Subscriber:
    endpoint: str
    topic_arn: str
    queue_url: str

    def settings(self, **overrides: Any) -> sns.SnsSettings:
        given: dict[str, Any] = {
            "topic_arn": self.topic_arn, "endpoint_url": self.endpoint, "region": REGION,
            "access_key_id": CREDENTIALS["aws_access_key_id"],
            "secret_access_key": CREDENTIALS["aws_secret_access_key"], "backoff_s": 0.01,
        }  # fmt: skip
        return sns.SnsSettings(**{**given, **overrides})

    def env(self) -> dict[str, str]:
        return {
            "SLUICEWAY_SINK_SNS_TOPIC_ARN": self.topic_arn,
            "SLUICEWAY_SINK_SNS_ENDPOINT_URL": self.endpoint,
            "SLUICEWAY_SINK_SNS_REGION": REGION,
            "SLUICEWAY_SINK_SNS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "SLUICEWAY_SINK_SNS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        }

    def received(self) -> list[dict[str, Any]]:
        """The notices delivered so far (the SNS envelopes' messages), consumed."""
        sqs = boto3.client("sqs", endpoint_url=self.endpoint, region_name=REGION, **CREDENTIALS)
        found: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = batch.get("Messages", [])
            if not messages:
                return found
            for item in messages:
                envelope = json.loads(item["Body"])
                found.append({**json.loads(envelope["Message"]), "_envelope": envelope})
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=item["ReceiptHandle"])


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        topic = boto3.client("sns", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)
        arn = topic.create_topic(Name="sluiceway-exports")["TopicArn"]
        queue = sqs.create_queue(QueueName="subscriber")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        topic.subscribe(TopicArn=arn, Protocol="sqs",
                        Endpoint=queue_arn["Attributes"]["QueueArn"])  # fmt: skip
        yield Subscriber(endpoint, arn, queue)
    finally:
        server.stop()


MANIFEST = run_manifest({
    "etl_id": "20261205T010203Z-ab12",
    "type": "delta",
    "full_export_date": "2026-12-04",
    "spec": {"destination": "s3://lake/exports"},
    "tables": {"issue": {"files": [{"path": "2026/12/04/daily-export/delta-export/2026/12/05/"
                                            "issue/20261205T010203Z-ab12/part-00000-0.parquet"}]}},
})  # fmt: skip
NOTE = {"event": "run_complete", "etl_id": MANIFEST.etl_id, "type": "delta"}


def test_a_notice_reaches_the_subscriber_after_failed_tries(subscriber: Subscriber) -> None:
    real = sns.client_publish(subscriber.settings())
    tries: list[int] = []

    def flaky(request: dict[str, Any]) -> Any:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("endpoint reset the connection")
        return real(request)

    assert sns.publish(MANIFEST, NOTE, subscriber.settings(), send=flaky, sleep=lambda _: None)
    assert len(tries) == 3
    [got] = wait_for(subscriber.received, 30, "the SNS message in the queue")
    assert got["s3_path"] == "s3://lake/exports/2026/12/04/daily-export/delta-export/2026/12/05"
    assert got["etl_id"] == MANIFEST.etl_id and got["export_type"] == "delta"
    attributes = got["_envelope"]["MessageAttributes"]
    assert attributes["etl_id"]["Value"] == MANIFEST.etl_id
    assert attributes["export_type"]["Value"] == "delta"


def test_an_unreachable_endpoint_is_given_up_without_raising(subscriber: Subscriber) -> None:
    down = subscriber.settings(endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=2,
                               timeout_s=1.0)  # fmt: skip
    assert sns.publish(MANIFEST, NOTE, down, sleep=lambda _: None) is False
    assert sns.publish(MANIFEST, NOTE, sns.SnsSettings()) is False  # no topic: nothing sent


def test_every_completed_run_is_announced(
    subscriber: Subscriber, kafka: KafkaSettings, source_db: PostgresSettings, cli: Cli,
    tmp_path: Path,
) -> None:  # fmt: skip
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "10")
    cli("capture", "--snapshot-only")
    announcing = Cli(settings_env(kafka, source_db, subscriber.env()))
    lake = tmp_path / "lake"
    runs = []
    for run_type in ("full", "delta"):
        started = announcing.json("export", "start", "--tenant", "tenant-001", "--dest",
                                  str(lake), "--type", run_type, "--wait", timeout=600)  # fmt: skip
        runs.append((started["etl_id"], run_type))
    got = wait_for(subscriber.received, 30, "the notices in the queue")
    assert sorted((m["etl_id"], m["export_type"]) for m in got) == sorted(runs)
    for notice in got:
        path = Path(notice["s3_path"])
        etl_id = notice["etl_id"]
        written = json.loads((lake / "_runs" / f"{etl_id}.json").read_text())["totals"]["files"]
        assert path.is_relative_to(lake) and path.is_dir() == bool(written)  # a quiet delta: none
        kind = "full-export" if notice["export_type"] == "full" else "delta-export"
        assert kind in path.parts
