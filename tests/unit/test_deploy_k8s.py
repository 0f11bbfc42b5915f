"""deploy/k8s: every manifest parses, hangs together, and passes the Kubernetes schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from sluiceway.api.auth import ApiSettings
from sluiceway.common.health import HealthSettings
from sluiceway.common.settings import (
    SECRET_ENV,
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    StackSettings,
)
from sluiceway.common.settings_base import env_names
from sluiceway.control.pool import PoolSettings
from sluiceway.control.runner import LaunchSettings
from sluiceway.producers.config import CaptureTuning
from sluiceway.sinks.config import SinkSettings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes still supported upstream when this was written
# the stage, its replicas, its health port and the command it runs
STAGES = {
    "capture": (1, 9400, ["capture", "--metrics-port", "9400"]),
    "processor": (2, 9401, ["process", "--pool", "--metrics-port", "9401"]),
    "sink": (2, 9402, ["sink", "--pool", "--metrics-port", "9402"]),
    "serve": (1, 18400, ["serve", "--host", "0.0.0.0", "--port", "18400"]),
}
SETTINGS: tuple[type[BaseSettings], ...] = (
    KafkaSettings, PostgresSettings, S3Settings, StackSettings, HealthSettings, PoolSettings,
    LaunchSettings, ApiSettings, SinkSettings, CaptureTuning,
)  # fmt: skip


def _docs() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return docs


DOCS = _docs()


def _one(kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _env_names() -> set[str]:
    names = {SECRET_ENV}
    for cls in SETTINGS:
        for name, field in cls.model_fields.items():
            names |= set(env_names(cls, name, field))
    return names


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(on_disk)
    assert kustomization["namespace"] == "sluiceway"


def test_kinds_and_namespace() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in DOCS)
    assert kinds == sorted(
        [("Namespace", "sluiceway"), ("ConfigMap", "sluiceway-settings"),
         ("Secret", "sluiceway-secrets"), ("Service", "sluiceway-serve")]
        + [("Deployment", f"sluiceway-{s}") for s in STAGES]
    )  # fmt: skip
    for doc in DOCS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "sluiceway", doc["metadata"]["name"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_passes_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    # strict: an unknown or misspelt field fails too (the schemas ship in the package: offline)
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field() -> None:
    broken = yaml.safe_load(yaml.safe_dump(_one("Deployment", "sluiceway-sink")))
    probe = broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _container(stage: str) -> dict[str, Any]:
    pod = _one("Deployment", f"sluiceway-{stage}")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return dict(container)


@pytest.mark.parametrize("stage", STAGES)
def test_deployment_is_consistent(stage: str) -> None:
    replicas, port, args = STAGES[stage]
    deployment = _one("Deployment", f"sluiceway-{stage}")
    spec, template = deployment["spec"], deployment["spec"]["template"]
    assert spec["replicas"] == replicas
    labels = template["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    container = _container(stage)
    assert container["args"] == args
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports[get["port"]] == port
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    refs = {next(iter(ref)): next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert refs == {"configMapRef": "sluiceway-settings", "secretRef": "sluiceway-secrets"}
    mounts = {m["name"] for m in container.get("volumeMounts", [])}
    assert mounts <= {v["name"] for v in template["spec"].get("volumes", [])}


def test_capture_and_serve_never_run_twice() -> None:
    # two captures would fight over the slot; two schedulers would start each run twice
    for stage in ("capture", "serve"):
        assert _one("Deployment", f"sluiceway-{stage}")["spec"]["strategy"]["type"] == "Recreate"


def test_pools_get_time_to_stop_their_runs() -> None:
    settings = _one("ConfigMap", "sluiceway-settings")["data"]
    stop_s = float(settings["SLUICEWAY_POOL_STOP_TIMEOUT_S"])
    for stage in ("processor", "sink"):
        pod = _one("Deployment", f"sluiceway-{stage}")["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > stop_s


def test_service_selects_serve_on_its_port() -> None:
    service = _one("Service", "sluiceway-serve")
    template = _one("Deployment", "sluiceway-serve")["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in _container("serve")["ports"]}


def test_settings_and_secrets_name_real_settings() -> None:
    known = _env_names()
    settings = _one("ConfigMap", "sluiceway-settings")["data"]
    secrets = _one("Secret", "sluiceway-secrets")["stringData"]
    assert not (set(settings) | set(secrets)) - known
    assert not [k for k in settings if any(w in k for w in ("PASSWORD", "SECRET", "TOKEN", "KEY"))]
    wanted = {
        SECRET_ENV,
        "SLUICEWAY_API_TOKEN",
        "SLUICEWAY_S3_ACCESS_KEY",
        "SLUICEWAY_S3_SECRET_KEY",
    }
    assert wanted <= set(secrets)
    assert all(v.startswith("REPLACE-") for v in secrets.values())
    assert settings["SLUICEWAY_LAUNCH"] == "pool"
    assert settings["SLUICEWAY_HEALTH_HOST"] == "0.0.0.0"
