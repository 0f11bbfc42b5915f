"""Object-store credentials like every AWS tool: an export with no static keys signs with
the AWS credentials of its environment, and one with a KMS key leaves objects encrypted
under that key (checked on moto's S3 + KMS server, started here on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer
from pyarrow import fs

from sluiceway.common.settings import LOCAL_S3_KEYS
from tests.catalogs import ENTITIES
from tests.conftest import Cli, Stack, isolated
from tests.integration.test_end_to_end import source_ids
from tests.net import free_port

pytestmark = pytest.mark.integration
TENANT = "tenant-001"
NO_INSTANCE_ROLE = {"AWS_EC2_METADATA_DISABLED": "true"}  # no metadata-service waits here


@pytest.fixture(scope="module")
def captured(local_stack: Stack) -> Iterator[tuple[Cli, Any]]:
    for _kafka, pg, cli in isolated(local_stack):
        cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "30", "--seed", "5")
        cli("capture", "--snapshot-only")
        yield cli, pg


def _export(cli: Cli, dest: str, env: dict[str, str], check: bool = True) -> Any:
    run = Cli({**cli.env, **env})
    args = ["export", "start", "--tenant", TENANT, "--type", "full", "--dest", dest, "--wait"]
    return run.json(*args, timeout=600) if check else run(*args, timeout=600, check=False)


def _without_s3_keys(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(("SLUICEWAY_S3_", "AWS_"))}


def test_no_static_keys_uses_the_environments_credentials(
    captured: tuple[Cli, Any], local_stack: Stack, unique: str
) -> None:
    cli, pg = captured
    s3 = local_stack.s3
    base = Cli(_without_s3_keys(cli.env))
    env = {"SLUICEWAY_S3_ENDPOINT": s3.endpoint_url, **NO_INSTANCE_ROLE}
    dest = f"s3://{s3.bucket}/chain-{unique}"
    refused = _export(base, dest, env, check=False)  # no keys anywhere: one clear line
    assert refused.returncode != 0
    errors = [ln for ln in refused.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"s3://{s3.bucket}/chain-{unique}" in errors[0], refused.stderr
    keys = {"AWS_ACCESS_KEY_ID": LOCAL_S3_KEYS[0], "AWS_SECRET_ACCESS_KEY": LOCAL_S3_KEYS[1]}
    result = _export(base, dest, {**env, **keys})
    store = fs.S3FileSystem(
        access_key=LOCAL_S3_KEYS[0], secret_key=LOCAL_S3_KEYS[1], region=s3.region,
        endpoint_override=f"{s3.host}:{s3.port}", scheme="http",
    )  # fmt: skip
    for entity in ENTITIES:
        selector = fs.FileSelector(f"{s3.bucket}/chain-{unique}", recursive=True)
        paths = [
            i.path for i in store.get_file_info(selector)
            if f"/{entity}/{result['etl_id']}/part-" in i.path and i.path.endswith(".parquet")
        ]  # fmt: skip
        table = pa.concat_tables(pq.read_table(p, filesystem=store) for p in paths)
        assert sorted(table.column("id").to_pylist()) == source_ids(pg, entity, TENANT)
    assert LOCAL_S3_KEYS[1] not in refused.stderr + refused.stdout


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_kms_key_id_on_every_object(captured: tuple[Cli, Any], moto_server: str) -> None:
    cli, _pg = captured
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    client_args: dict[str, Any] = {
        "endpoint_url": moto_server, "region_name": "us-east-1",
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
    }  # fmt: skip
    key_id = boto3.client("kms", **client_args).create_key()["KeyMetadata"]["KeyId"]
    s3 = boto3.client("s3", **client_args)
    s3.create_bucket(Bucket="encrypted")
    env = {
        **keys, **NO_INSTANCE_ROLE, "SLUICEWAY_S3_ENDPOINT": moto_server,
        "SLUICEWAY_S3_SSE": "aws:kms", "SLUICEWAY_S3_KMS_KEY_ID": key_id,
    }  # fmt: skip
    result = _export(Cli(_without_s3_keys(cli.env)), "s3://encrypted/lake", env)
    listed = s3.list_objects_v2(Bucket="encrypted", Prefix="lake/")["Contents"]
    names = [o["Key"] for o in listed]
    assert any(f"/{result['etl_id']}/part-" in n for n in names), names
    assert any(n.endswith(".json") for n in names), names  # manifests too
    for name in names:
        head = s3.head_object(Bucket="encrypted", Key=name)
        assert head["ServerSideEncryption"] == "aws:kms", name
        assert head["SSEKMSKeyId"].endswith(key_id), (name, head["SSEKMSKeyId"])


def test_a_role_is_assumed_through_sts(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sluiceway.common.settings import S3Settings
    from sluiceway.lake.storage import open_lake, write_bytes_atomic

    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server)  # STS of the moto server
    s3 = boto3.client(
        "s3", endpoint_url=moto_server, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    s3.create_bucket(Bucket="assumed")
    settings = S3Settings(
        endpoint=moto_server, access_key="testing", secret_key="testing",
        role_arn="arn:aws:iam::123456789012:role/lake-writer",
    )  # fmt: skip
    write_bytes_atomic(open_lake("s3://assumed/lake", settings), "a.json", b"{}")
    assert s3.get_object(Bucket="assumed", Key="lake/a.json")["Body"].read() == b"{}"
