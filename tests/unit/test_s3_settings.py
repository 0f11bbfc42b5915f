"""S3 settings: static keys or the AWS default chain, encryption, addressing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluiceway.common.settings import LOCAL_S3_KEYS, S3Settings, settings_problem
from sluiceway.lake.storage import s3_filesystem


def test_the_local_stack_keeps_its_own_keys() -> None:
    assert S3Settings().static_keys() == LOCAL_S3_KEYS


def test_no_keys_with_an_endpoint_means_the_default_chain() -> None:
    assert S3Settings(endpoint="https://s3.eu-west-1.amazonaws.com").static_keys() is None
    keyed = S3Settings(endpoint="https://x", access_key="AKIA1", secret_key="s3cr3t")
    assert keyed.static_keys() == ("AKIA1", "s3cr3t")
    assert "s3cr3t" not in repr(keyed) and "s3cr3t" not in str(keyed.model_dump())


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ACCESS_KEY": "AKIA1"}, "access_key and secret_key go together"),
        ({"KMS_KEY_ID": "k-1"}, "kms_key_id needs sse=aws:kms"),
        ({"SSE": "kms"}, "SLUICEWAY_S3_SSE='kms'"),
        ({"ADDRESSING": "dns"}, "SLUICEWAY_S3_ADDRESSING='dns'"),
    ],
)
def test_bad_settings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"SLUICEWAY_S3_{name}", value)
    with pytest.raises(ValidationError) as caught:
        S3Settings()
    line = settings_problem(caught.value)
    assert line is not None and expected in line and "\n" not in line


def test_encryption_goes_through_s3fs_with_its_headers() -> None:
    s3 = S3Settings(
        endpoint="http://127.0.0.1:1", sse="aws:kms", kms_key_id="k-1", addressing="virtual"
    )
    handler = s3_filesystem(s3).handler
    assert handler.fs.s3_additional_kwargs == {
        "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "k-1",
    }  # fmt: skip
    assert handler.fs.config_kwargs == {"s3": {"addressing_style": "virtual"}}
