"""What finished runs leave behind, on the real stack: a complete run's topics and consumer
groups go when its manifest is written (or after a retention, by a sweep), expired runs'
control records are tombstoned, status never recreates a deleted destination, and a feed
cannot run more often than the minimum interval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import ConfigResource
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sluiceway.api.app import Services, create_app
from sluiceway.common.kafka_io import admin, read_control
from sluiceway.common.runs import RunRecord, new_etl_id
from sluiceway.common.settings import KafkaSettings
from sluiceway.control.cleanup import CleanupSettings, sweep
from sluiceway.control.runner import log_dir
from tests.conftest import Cli, Stack, settings_env
from tests.integration.records import publish_run
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TOKEN = "cleanup-integration-token-8c2d4e6f"


def leftovers(kafka: KafkaSettings, etl_id: str) -> set[str]:
    """The run's topics and consumer groups the broker still lists: every one named with the
    run's id, not only those ``run_groups`` expects."""
    client = admin(kafka)
    topics = {t for t in client.list_topics(timeout=30).topics if etl_id in t}
    groups = {g.group_id for g in client.list_consumer_groups().result(30).valid or []}
    return topics | {g for g in groups if etl_id in g}


def export(cli: Cli, lake: Path, *opt_out: str) -> dict[str, Any]:
    """A full export of tenant-001; an opt-out makes the run scan its carrier's topic too."""
    spec = lake.parent / f"{lake.name}-spec.json"
    spec.write_text(json.dumps({"tenants": ["tenant-001"], "type": "full",
                                "destination": str(lake), "opt_out": list(opt_out)}))  # fmt: skip
    run: dict[str, Any] = cli.json(
        "export", "start", "--spec", str(spec), "--wait", "--timeout", "240"
    )
    assert run["status"] == "complete", run
    return run


def test_a_complete_run_drops_its_topics_and_groups_and_expires_later(
    cli: Cli, kafka: KafkaSettings, local_stack: Stack, tmp_path: Path
) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "6")
    cli("capture", "--snapshot-only")
    # an opt-out no project has: the run scans its carrier too, and nothing is left out
    etl_id = export(cli, tmp_path / "lake", "NO-SUCH-PROJECT")["etl_id"]
    assert kafka.run_topic(etl_id).startswith(kafka.topic_prefix)
    wait_for(lambda: not leftovers(kafka, etl_id), 60, "the run's topics and groups to go")
    # the lake keeps the result: the run is still complete
    assert cli.json("export", "status", etl_id)["status"] == "complete"
    assert log_dir(etl_id).is_dir()
    # a worker a supervisor starts again after its run completed: done, not an error
    late = cli("process", "--run", etl_id, check=False, timeout=120)
    assert late.returncode == 0, late.stdout + late.stderr
    assert f"run {etl_id} is complete; nothing is left to do" in late.stdout, late.stdout
    assert cli.json("process", "--run", etl_id, timeout=120) == {"status": "complete"}
    assert not leftovers(kafka, etl_id)  # it recreated nothing

    swept = sweep(kafka, local_stack.s3, CleanupSettings(record_retention_s=0))
    assert etl_id in swept.expired
    assert etl_id.encode() not in read_control(kafka, "runs")
    assert not log_dir(etl_id).exists()
    assert "no export runs yet" in cli("export", "status", check=False).stderr

    resource = ConfigResource(ConfigResource.Type.TOPIC, kafka.control_topic("runs"))
    client = admin(kafka)  # must outlive its futures: they resolve on its thread
    config = client.describe_configs([resource])[resource].result(30)
    assert config["cleanup.policy"].value == "compact"


def test_a_retention_keeps_the_topic_until_a_sweep_past_it(
    cli: Cli, kafka: KafkaSettings, local_stack: Stack, tmp_path: Path
) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "6")
    cli("capture", "--snapshot-only")
    keeping = Cli({**cli.env, "SLUICEWAY_CLEANUP_RUN_RETENTION_S": "3600"})
    etl_id = export(keeping, tmp_path / "lake")["etl_id"]
    assert kafka.run_topic(etl_id) in leftovers(kafka, etl_id)
    assert sweep(kafka, local_stack.s3, CleanupSettings(run_retention_s=3600)).dropped == []
    assert kafka.run_topic(etl_id) in leftovers(kafka, etl_id)

    swept = cli.json("export", "sweep")  # the default retention, 0, has passed
    assert swept == {"dropped": [etl_id], "expired": []}
    assert not leftovers(kafka, etl_id)
    assert etl_id.encode() in read_control(kafka, "runs")  # records outlive the topics


def test_status_of_a_deleted_destination_does_not_recreate_it(
    kafka: KafkaSettings, local_stack: Stack, tmp_path: Path
) -> None:
    gone = tmp_path / "deleted" / "lake"
    etl_id = new_etl_id()
    publish_run(kafka, RunRecord(
        etl_id=etl_id, type="full", tenants=("tenant-001",), entities=("issue",),
        destination=str(gone), run_topic=kafka.run_topic(etl_id), run_partitions=1,
        start={}, cut={},
    ))  # fmt: skip
    cli = Cli(settings_env(kafka, local_stack.pg))
    assert cli.json("export", "status", etl_id)["etl_id"] == etl_id
    assert cli.json("export", "status", "--all")[0]["etl_id"] == etl_id
    app = create_app(Services.build(kafka, local_stack.s3, SecretStr(TOKEN)))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {TOKEN}"
        assert api.get("/runs").status_code == api.get(f"/runs/{etl_id}").status_code == 200
    assert not (tmp_path / "deleted").exists()


def test_a_feed_below_the_minimum_interval_is_refused(
    kafka: KafkaSettings, local_stack: Stack
) -> None:
    app = create_app(Services.build(kafka, local_stack.s3, SecretStr(TOKEN)))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {TOKEN}"
        lake = f"s3://{local_stack.s3.bucket}/feed-{kafka.topic_prefix}"  # nothing is written
        spec = {"tenants": ["tenant-001"], "destination": lake, "type": "continuous"}
        refused = api.post("/runs", json=spec | {"interval": 1})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error == (
            "interval: 1 s is below the minimum of 60 s (SLUICEWAY_FEED_MIN_INTERVAL_S); "
            "every run creates Kafka topics and groups"
        )
        assert api.get("/schedules").json() == [] and api.get("/runs").json() == []
