"""Starting runs: the PII key reaches the workers or the start is refused, run ids never
collide, and a destination takes one run even when starters race for it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from sluiceway.common import runs
from sluiceway.common.fingerprint import secret_fingerprint
from sluiceway.common.kafka_io import admin, ensure_topics, load_run, read_control
from sluiceway.common.settings import SECRET_ENV, KafkaSettings
from sluiceway.common.spec import parse_spec
from sluiceway.control import export
from sluiceway.control.runner import start_run
from tests.conftest import Cli, Stack
from tests.integration.test_api import client_for
from tests.net import free_port, get
from tests.polling import wait_for

pytestmark = pytest.mark.integration
KEY, OTHER_KEY = "claims-test-key-one", "claims-test-key-two"
HASHING = {"tenants": ["tenant-001"], "pii": {"user.email_address": "hash"}, "pii_secret": KEY}


@pytest.fixture
def seeded(cli: Cli) -> Cli:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "3")
    cli("capture", "--snapshot-only")
    return Cli({k: v for k, v in cli.env.items() if k != SECRET_ENV})


def keyed(cli: Cli, key: str) -> Cli:
    return Cli({**cli.env, SECRET_ENV: key})


def hashing_spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**HASHING, "destination": str(tmp_path / "lake")}))
    return path


def test_a_key_that_cannot_reach_the_workers_is_refused(
    seeded: Cli, kafka: KafkaSettings, local_stack: Stack, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    spec = hashing_spec(tmp_path)
    for starter, why in ((seeded, "has no"), (keyed(seeded, OTHER_KEY), "has another key")):
        refused = starter("export", "start", "--spec", str(spec), "--no-launch", check=False)
        assert refused.returncode == 3  # bad input: do not retry
        [line] = refused.stderr.strip().splitlines()
        assert "pii_secret cannot reach workers started elsewhere" in line and why in line
        assert KEY not in refused.stdout + line and OTHER_KEY not in refused.stdout + line
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with client_for(kafka, local_stack, str(tmp_path)) as api:
        body = json.loads(spec.read_text())
        response = api.post("/runs", params={"launch": "false"}, json=body)
    assert response.status_code == 400, response.text
    assert "pii_secret cannot reach" in response.json()["error"] and KEY not in response.text
    assert read_control(kafka, "runs") == {}  # nothing was announced


def test_a_worker_with_another_key_refuses_the_run(
    seeded: Cli, kafka: KafkaSettings, tmp_path: Path
) -> None:
    started = keyed(seeded, KEY).json("export", "start", "--spec", str(hashing_spec(tmp_path)),
                                      "--no-launch")  # fmt: skip
    etl_id = started["etl_id"]
    raw = read_control(kafka, "runs")[etl_id.encode()]
    assert KEY.encode() not in raw
    assert json.loads(raw)["secret_fingerprint"] == secret_fingerprint(KEY)
    worker = keyed(seeded, OTHER_KEY)("process", "--run", etl_id, check=False, timeout=120)
    assert worker.returncode == 3, worker.stdout + worker.stderr
    wanted = f"run {etl_id} hashes PII with the key of fingerprint {secret_fingerprint(KEY)}"
    assert wanted in worker.stderr
    assert KEY not in worker.stderr + worker.stdout and OTHER_KEY not in worker.stderr
    status = seeded.json("export", "status", etl_id)
    assert status["status"] == "failed" and wanted in status["reason"]


def test_a_run_never_takes_an_id_whose_topic_or_record_exists(
    seeded: Cli, kafka: KafkaSettings, local_stack: Stack, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def start(lake: str, first_id: str) -> runs.RunRecord:
        given = iter([first_id])  # the id generator's first answer is one already in use
        monkeypatch.setattr(
            export, "new_etl_id", lambda *when: next(given, None) or runs.new_etl_id(*when)
        )
        spec = parse_spec({"tenants": ["tenant-001"], "destination": str(tmp_path / lake)})
        run, _ = start_run(spec, kafka, local_stack.s3, launch=False)
        return run

    taken = runs.new_etl_id()
    ensure_topics(kafka, [kafka.run_topic(taken)], 1)
    first = start("a", taken)
    assert first.etl_id != taken and first.run_topic == kafka.run_topic(first.etl_id)
    # a run whose topic is gone (cleaned up) still owns its id through its record
    client = admin(kafka)  # must outlive its futures
    client.delete_topics([first.run_topic])[first.run_topic].result(30)
    wait_for(lambda: first.run_topic not in client.list_topics(timeout=10).topics, 30,
             "the run topic to be deleted")  # fmt: skip
    second = start("b", first.etl_id)
    assert second.etl_id not in (taken, first.etl_id)
    assert load_run(kafka, first.etl_id) == first
    assert load_run(kafka, second.etl_id).destination == str(tmp_path / "b")


@dataclass(frozen=True)
class Outcome:
    starter: str
    etl_id: str | None  # set for the starter that got the destination
    detail: str


def _post(port: int, token: str, lake: str) -> Outcome:
    body = json.dumps({"tenants": ["tenant-001"], "destination": lake}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/runs?launch=false", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return Outcome("api", json.loads(resp.read())["etl_id"], str(resp.status))
    except urllib.error.HTTPError as exc:
        return Outcome("api", None, f"{exc.code} {exc.read().decode()}")


def _cli_start(cli: Cli, lake: str) -> Outcome:
    found = cli("export", "start", "--tenant", "tenant-001", "--dest", lake, "--no-launch",
                "--json", check=False)  # fmt: skip
    if found.returncode == 0:
        return Outcome("cli", json.loads(found.stdout)["etl_id"], "started")
    # with --json the error is a JSON object on stdout
    return Outcome("cli", None, f"exit {found.returncode}: {json.loads(found.stdout)['error']}")


def race(cli: Cli, port: int, token: str, lake: str) -> list[Outcome]:
    """Three API requests and two CLI processes start a run at ``lake`` at once."""
    api: Callable[[], Outcome] = lambda: _post(port, token, lake)  # noqa: E731
    command: Callable[[], Outcome] = lambda: _cli_start(cli, lake)  # noqa: E731
    starters = [api] * 3 + [command] * 2
    gate = threading.Barrier(len(starters))

    def go(starter: Callable[[], Outcome]) -> Outcome:
        gate.wait(30)
        return starter()

    with ThreadPoolExecutor(len(starters)) as pool:
        return list(pool.map(go, starters))


def test_racing_starts_at_one_destination_start_exactly_one_run(
    seeded: Cli, tmp_path: Path
) -> None:
    port, token = free_port(), "claims-test-token-0123456789abcdef"
    serve = subprocess.Popen(
        [sys.executable, "-m", "sluiceway.cli", "serve", "--port", str(port)],
        env={**seeded.env, "SLUICEWAY_API_TOKEN": token, "SLUICEWAY_API_ROOTS": str(tmp_path)},
        stdin=subprocess.DEVNULL,
        stdout=(tmp_path / "serve.log").open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: get(port, "/readyz")[0] == 200, 60, "serve to be ready")
        for round_no in range(4):
            lake = str(tmp_path / f"lake-{round_no}")
            outcomes = race(seeded, port, token, lake)
            winners = [o.etl_id for o in outcomes if o.etl_id is not None]
            assert len(winners) == 1, outcomes
            lost = [o.detail for o in outcomes if o.etl_id is None]
            # one line each, naming the destination as busy
            odd = [d for d in lost if "is busy" not in d or "\n" in d]
            assert not odd, "\n".join(odd)
            listed = seeded.json("export", "status", "--all")
            assert [r["etl_id"] for r in listed if r["destination"] == lake] == winners
            seeded("export", "cancel", winners[0])
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
