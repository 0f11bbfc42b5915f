"""The skew rule and per-tenant spread settings (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluiceway.checks import _topic_settings
from sluiceway.common.settings import KafkaSettings, to_env
from sluiceway.kafka_check import skew_warning


def test_share_above_the_threshold_names_the_partition() -> None:
    line = skew_warning({0: 10, 1: 10, 2: 80}, 0.5, 50)
    assert line is not None and line.startswith("partition 2 holds 80% of the change topics' 100")
    assert "an even share is 33%" in line


@pytest.mark.parametrize(
    "events",
    [{0: 50, 1: 50}, {0: 10, 1: 10, 2: 40}, {0: 100}, {0: 1, 1: 0, 2: 45}, {}],
)
def test_no_warning(events: dict[int, int]) -> None:
    # at the threshold, one partition only, or too few events in all
    assert skew_warning(events, 0.5 if len(events) != 3 else 0.67, 50) is None


def test_tenant_spread_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_KAFKA_TENANT_SPREAD", '{"big": 4}')
    kafka = KafkaSettings(partitions=6)
    assert (kafka.spread_of("big"), kafka.spread_of("small")) == (4, 1)


def test_tenant_spread_must_be_positive() -> None:
    with pytest.raises(ValidationError, match=r"tenant .big. has spread 0; expected 1 or more"):
        KafkaSettings(tenant_spread={"big": 0})


def test_a_tenant_spread_wider_than_the_partitions_fails_check() -> None:
    finding = _topic_settings(KafkaSettings(partitions=3, tenant_spread={"big": 4}), {})
    assert not finding.ok
    assert finding.detail == "kafka.tenant_spread['big']=4 exceeds kafka.partitions=3"


def test_a_tenant_spread_reaches_a_child_process_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    # a run's workers rebuild their settings from to_env; a dict must survive as JSON
    for name, value in to_env(KafkaSettings(tenant_spread={"big": 4, "x'y": 2})).items():
        monkeypatch.setenv(name, value)
    assert KafkaSettings().tenant_spread == {"big": 4, "x'y": 2}
