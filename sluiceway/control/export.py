"""Starting an export run: validate, take the cut, announce the run, launch its workers.

The cut is the high watermark of every change-topic partition when the run starts. The
run's processor group is given its start offsets before any worker joins: the selected
tenants' partitions start at ``start`` and every other partition at the cut, so a
single-tenant run never scans other tenants' partitions.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from sluiceway.common.errors import ConfigError, TransientError
from sluiceway.common.fingerprint import secret_fingerprint
from sluiceway.common.kafka_io import (
    admin,
    check_broker,
    create_topic,
    ensure_dlq_topics,
    ensure_topics,
    known_tenants,
    metadata_of,
    partition_count,
    read_control,
    watermarks,
)
from sluiceway.common.partitioning import tenant_partitions
from sluiceway.common.policy import differences, effective_policy
from sluiceway.common.read_path import decide, estimate
from sluiceway.common.runs import Offsets, RunRecord, etl_id_time, new_etl_id
from sluiceway.common.settings import SECRET_ENV, KafkaSettings, S3Settings, to_env
from sluiceway.common.spec import RunSpec, check_tenants
from sluiceway.common.tenant_index_io import load_coverage
from sluiceway.control.replay import replay_cut, require_events
from sluiceway.processors.ownership import parse_metadata

if TYPE_CHECKING:
    from sluiceway.lake.manifest import RunManifest

log = logging.getLogger("sluiceway.control.export")


class ChainPolicyError(ConfigError):
    """A delta would make its rows another way than the chain it continues (another pii rule,
    secret, opt-out, remap...); a full export starts a new chain instead."""


def validate_request(spec: RunSpec, kafka: KafkaSettings, s3: S3Settings) -> None:
    """Every problem a user can fix that needs the stack, checked before anything is created."""
    if spec.type == "continuous":
        raise ConfigError(
            "type 'continuous' runs a delta every interval; schedule it with sluiceway serve "
            "(PUT /rest/datapipeline/latest/config/schedule or POST /runs)"
        )
    check_broker(kafka)
    check_tenants(spec, known_tenants(kafka))
    check_destination(spec.destination, s3)
    from sluiceway.sinks.disk_guard import check_start
    from sluiceway.sinks.guard_config import GuardSettings

    check_start(spec.destination, GuardSettings().min_free_bytes)


def absolute_destination(destination: str) -> str:
    """The destination as a run records it: workers may run from another directory."""
    if destination.startswith("s3://"):
        return destination
    return str(Path(destination).expanduser().resolve())


def check_destination(destination: str, s3: S3Settings) -> None:
    """Fails with one line naming the destination when it cannot be written."""
    from sluiceway.lake.storage import open_lake

    open_lake(destination, s3)


def _selected(spec: RunSpec, kafka: KafkaSettings, parts: int) -> set[int]:
    return set().union(*(tenant_partitions(t, parts, kafka.spread_of(t)) for t in spec.tenants))


def _offsets(
    spec: RunSpec, kafka: KafkaSettings, parts: int, since: Offsets | None, until: Offsets | None
) -> tuple[Offsets, Offsets]:
    """Start and cut per partition: a delta starts where the previous run cut; an explicit
    cut (``until``, a replay's) replaces the high watermark of the partitions it names."""
    selected = _selected(spec, kafka, parts)
    start: Offsets = {}
    cut: Offsets = {}
    for entity in spec.entities:
        topic = kafka.cdc_topic(entity)
        marks = watermarks(kafka, topic, range(parts))
        explicit = (until or {}).get(topic, {})
        cut[topic] = {p: explicit.get(p, high) for p, (_low, high) in marks.items()}
        begin = {p: low for p, (low, _high) in marks.items()}
        if since is not None:
            begin = {p: since[topic][p] for p in marks}
        start[topic] = {p: (begin[p] if p in selected else cut[topic][p]) for p in marks}
    return start, cut


def previous_cut(spec: RunSpec, kafka: KafkaSettings, s3: S3Settings) -> Offsets:
    """The cut of the destination's latest run, which a delta run continues from."""
    from sluiceway.lake import reader

    latest = reader.latest_run(reader.open_readonly(spec.destination, s3))
    if latest is None:
        raise ConfigError(
            f"destination {spec.destination} has no earlier run; a delta needs a full export first"
        )
    chain = latest.spec
    if sorted(chain.tenants) != sorted(spec.tenants) or sorted(chain.entities) != sorted(
        spec.entities
    ):
        raise ConfigError(
            f"destination {spec.destination} holds a chain of tenants {list(chain.tenants)} and "
            f"entities {list(chain.entities)}; a delta must continue it with the same selection"
        )
    check_chain_policy(spec, latest)
    cut = latest.cut
    missing = [kafka.cdc_topic(e) for e in spec.entities if kafka.cdc_topic(e) not in cut]
    if missing:
        raise ConfigError(f"the previous run of {spec.destination} did not read {missing}")
    return {t: dict(ps) for t, ps in cut.items()}


def check_chain_policy(spec: RunSpec, latest: RunManifest) -> None:
    """A delta continues its chain only with the chain's policy; a full export starts anew."""
    found = differences(effective_policy(spec), latest.policy)
    if found:
        raise ChainPolicyError(
            f"a delta at {spec.destination} must continue the policy of its chain (latest run "
            f"{latest.etl_id}), but {'; '.join(found)}; use the chain's policy, or start "
            "a new chain with this one by running a full export (--type full)"
        )


def replay_until(spec: RunSpec, kafka: KafkaSettings, parts: int, to: datetime) -> Offsets:
    """A replay's cut: per selected partition, the first event committed after ``to``."""
    selected = sorted(_selected(spec, kafka, parts))
    return replay_cut(kafka, [(kafka.cdc_topic(e), p) for e in spec.entities for p in selected], to)


def plan_run(
    spec: RunSpec, kafka: KafkaSettings, s3: S3Settings, replay_to: datetime | None = None,
    now: datetime | None = None,
) -> RunRecord:  # fmt: skip
    """The run's offsets; ``replay_to`` makes a full run whose cut is that time. ``now``
    (default: the clock) dates the run: its etl_id, and so its folders."""
    parts = partition_count(kafka, kafka.cdc_topic(spec.entities[0]))
    since = previous_cut(spec, kafka, s3) if spec.type == "delta" else None
    until = replay_until(spec, kafka, parts, replay_to) if replay_to else None
    start, cut = _offsets(spec, kafka, parts, since, until)
    if replay_to is not None:
        require_events(cut, start, replay_to, spec.tenants)
    read_path = choose_read_path(kafka, spec.tenants, start, cut)
    etl_id = new_etl_id(now)
    secret = spec.pii_secret.get_secret_value() if spec.pii_secret else None
    created: dict[str, Any] = {"created_at": now.astimezone(UTC).isoformat()} if now else {}
    return RunRecord(
        etl_id=etl_id,
        type=spec.type,
        tenants=spec.tenants,
        entities=spec.entities,
        destination=spec.destination,
        run_topic=kafka.run_topic(etl_id),
        run_partitions=parts,
        start=start,
        cut=cut,
        format=spec.format,
        policy=effective_policy(spec),
        spec=spec.public_dict(),
        replay_to=replay_to.isoformat() if replay_to else None,
        secret_fingerprint=secret_fingerprint(secret) if secret else None,
        read_path=read_path,
        **created,
    )


def choose_read_path(
    kafka: KafkaSettings, tenants: Sequence[str], start: Offsets, cut: Offsets
) -> dict[str, Any]:
    """Scan the run's partitions or read through the tenant index (common/read_path.py)."""
    ranges = {
        (topic, p): (start[topic][p], high)
        for topic, highs in cut.items()
        for p, high in highs.items()
        if high > start[topic][p]
    }
    if kafka.tenant_index == "off" or not ranges:
        return decide(kafka.tenant_index, estimate({}, ranges))
    parts = {p for _t, p in ranges}
    try:
        coverage = load_coverage(kafka, list(cut), parts, tenants)
    except (KafkaException, TransientError) as exc:
        # the index only saves reads: a run whose index cannot be read now scans
        log.warning("cannot read the tenant index (%s); the run scans its partitions", exc)
        coverage = {}
    return decide(kafka.tenant_index, estimate(coverage, ranges))


def announce(
    run: RunRecord, kafka: KafkaSettings, publish: Callable[[RunRecord], None]
) -> RunRecord:
    """Create the run topic, seed the processor group's offsets, publish the run (through a
    DestinationClaim). Returns the run as published: its id changes if the first was taken."""
    run = claim_run_id(run, kafka)
    ensure_dlq_topics(kafka, ["processor", "sink"], 1)
    ensure_topics(kafka, [kafka.notifications_topic], 1)
    offsets = [
        TopicPartition(topic, p, offset)
        for topic, parts in run.start.items()
        for p, offset in parts.items()
    ]
    group = ConsumerGroupTopicPartitions(f"sw-process-{run.etl_id}", offsets)
    client = admin(kafka)  # must outlive its futures: they resolve on its thread
    for fut in client.alter_consumer_group_offsets([group]).values():
        fut.result(30)
    publish(run)
    return run


ID_ATTEMPTS = 5


def claim_run_id(run: RunRecord, kafka: KafkaSettings) -> RunRecord:
    """The run under an id no other run has: no record may hold it and creating its topic
    must succeed (Kafka creates a topic once, so of two runs given one id one gets another).
    The record check covers a run whose topic was deleted since."""
    taken = read_control(kafka, "runs")
    for _ in range(ID_ATTEMPTS):
        if run.etl_id.encode() not in taken and create_topic(
            kafka, run.run_topic, run.run_partitions
        ):
            return run
        etl_id = new_etl_id(etl_id_time(run.etl_id))  # same second: its folders stay put
        run = replace(run, etl_id=etl_id, run_topic=kafka.run_topic(etl_id))
    raise TransientError(f"no unused etl_id after {ID_ATTEMPTS} tries; start the run again")


def discard(run: RunRecord, kafka: KafkaSettings) -> None:
    """Remove the topic and processor group of a run that was never published."""
    client = admin(kafka)
    futures = [
        *client.delete_topics([run.run_topic]).values(),
        *client.delete_consumer_groups([f"sw-process-{run.etl_id}"]).values(),
    ]
    for fut in futures:
        try:
            fut.result(30)
        except KafkaException as exc:  # left behind is harmless: no record names them
            log.warning("could not remove what run %s left: %s", run.etl_id, exc)


def launch_workers(
    run: RunRecord, kafka: KafkaSettings, log_dir: Path, secret: str | None = None
) -> dict[str, subprocess.Popen[bytes]]:
    """Start the run's processor and sink as detached processes that share our Kafka settings.

    The PII secret reaches them in their environment: it is never written to a topic or file.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **to_env(kafka)}
    if secret:
        env[SECRET_ENV] = secret
    workers: dict[str, subprocess.Popen[bytes]] = {}
    for stage in ("process", "sink"):
        log_file = (log_dir / f"{stage}.log").open("ab")
        workers[stage] = subprocess.Popen(
            [sys.executable, "-m", "sluiceway.cli", stage, "--run", run.etl_id],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        # `export cancel` finds the workers of a run started here by these
        (log_dir / f"{stage}.pid").write_text(str(workers[stage].pid))
    return workers


def scanned(run: RunRecord, kafka: KafkaSettings) -> tuple[int, int]:
    """(events read by the run's processors so far, events to read), from committed offsets."""
    total = sum(
        max(0, cut - run.start[t][p]) for t, parts in run.cut.items() for p, cut in parts.items()
    )
    group = ConsumerGroupTopicPartitions(f"sw-process-{run.etl_id}")
    client = admin(kafka)  # must outlive its futures: they resolve on its thread
    result = client.list_consumer_group_offsets([group])
    committed = next(iter(result.values())).result(30)  # slow under load; 10 s timed out
    done = 0
    for tp in committed.topic_partitions or []:
        start = run.start.get(tp.topic, {}).get(tp.partition)
        cut = run.cut.get(tp.topic, {}).get(tp.partition)
        if start is None or cut is None or tp.offset < 0:
            continue
        # a full run reads downwards from the cut: its commits say how far (``low``)
        low = parse_metadata(tp.offset, metadata_of(tp)).low
        done += (
            max(0, cut - max(low, start))
            if low is not None
            else max(0, min(tp.offset, cut) - start)
        )
    return done, total


def worker_failure(workers: dict[str, subprocess.Popen[bytes]], log_dir: Path) -> str | None:
    """A one-line reason when a worker of the run exited with an error."""
    for stage, proc in workers.items():
        code = proc.poll()
        if code not in (None, 0):
            log = log_dir / f"{stage}.log"
            return f"the run's {stage} worker exited with code {code}; see {log}"
    return None
