"""`sluiceway check`'s object-store lines: no credentials anywhere, a refused write."""

from __future__ import annotations

import pytest

from sluiceway.common.settings import LOCAL_S3_KEYS, S3Settings
from sluiceway.s3_check import s3_problems
from tests.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def no_aws_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")


def test_missing_credentials_is_one_line(local_stack: Stack, no_aws_chain: None) -> None:
    s3 = S3Settings(endpoint=local_stack.s3.endpoint_url)
    (line,) = s3_problems(s3)
    assert line.startswith(f"no S3 credentials for {local_stack.s3.endpoint_url}: ")


def test_credentials_from_the_environment_pass(
    local_stack: Stack, no_aws_chain: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", LOCAL_S3_KEYS[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", LOCAL_S3_KEYS[1])
    assert s3_problems(S3Settings(endpoint=local_stack.s3.endpoint_url)) == []


def test_wrong_keys_name_the_destination(local_stack: Stack, no_aws_chain: None) -> None:
    s3 = S3Settings(endpoint=local_stack.s3.endpoint_url, access_key="x", secret_key="nope-123")
    (line,) = s3_problems(s3, f"s3://{local_stack.s3.bucket}/check")
    assert f"s3://{local_stack.s3.bucket}/check" in line and "is not writable" in line
    assert "nope-123" not in line


def test_check_names_missing_s3_credentials(local_stack: Stack, no_aws_chain: None) -> None:
    import json
    import os

    from tests.conftest import Cli

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEWAY_S3_")}
    env["SLUICEWAY_S3_ENDPOINT"] = local_stack.s3.endpoint_url
    proc = Cli(env)("check", "--dest", f"s3://{local_stack.s3.bucket}/x", "--json", check=False)
    found = [f for f in json.loads(proc.stdout)["checks"] if f["name"].startswith("destination")]
    assert found[0]["ok"] is False
    assert str(found[0]["detail"]).startswith("no S3 credentials for ")


@pytest.mark.parametrize(
    ("sse", "key", "named"),
    [
        ("aws:kms", "arn:aws:kms:us-east-1:123456789012:key/not-ours", "KMS key 'arn:aws:kms"),
        ("AES256", None, "server-side encryption AES256"),
    ],
)
def test_a_refused_encryption_key_is_named(
    local_stack: Stack, sse: str, key: str | None, named: str
) -> None:
    # S3Proxy's filesystem store refuses every SSE header: a store that rejects the key
    s3 = S3Settings(
        endpoint=local_stack.s3.endpoint_url,
        access_key=LOCAL_S3_KEYS[0],
        secret_key=LOCAL_S3_KEYS[1],
        sse=sse,
        kms_key_id=key,
    )
    (line,) = s3_problems(s3, f"s3://{local_stack.s3.bucket}/kms-check")
    assert line.startswith(f"the store at {local_stack.s3.endpoint_url} refused {named}"), line
    assert "writes without it succeed" in line and "\n" not in line


def test_wrong_keys_with_encryption_are_not_blamed_on_the_key(
    local_stack: Stack, no_aws_chain: None
) -> None:
    s3 = S3Settings(
        endpoint=local_stack.s3.endpoint_url, access_key="x", secret_key="nope-123",
        sse="aws:kms", kms_key_id="k-1",
    )  # fmt: skip
    (line,) = s3_problems(s3, f"s3://{local_stack.s3.bucket}/kms-check")
    assert "is not writable" in line and "refused KMS key" not in line
