"""What ``sluiceway check`` asks the object store: are there credentials at all, and does
the store accept a write with the configured encryption. One line per problem."""

from __future__ import annotations

from sluiceway.common.errors import SluicewayError
from sluiceway.common.settings import S3Settings

CHAIN = (
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, "
    "AWS_WEB_IDENTITY_TOKEN_FILE, a container or instance role"
)


def credential_problems(s3: S3Settings) -> list[str]:
    """A line when neither static keys nor the AWS default credential chain give any."""
    if s3.static_keys() is not None:
        return []
    import boto3

    if boto3.session.Session(region_name=s3.region).get_credentials() is not None:
        return []
    return [
        f"no S3 credentials for {s3.endpoint_url}: SLUICEWAY_S3_ACCESS_KEY and "
        f"SLUICEWAY_S3_SECRET_KEY are unset and the AWS default chain ({CHAIN}) found none"
    ]


def write_problems(s3: S3Settings, destination: str | None = None) -> list[str]:
    """A line when a probe object cannot be written (and removed) under ``destination``
    (default: the configured bucket) with the configured encryption."""
    target = destination or f"s3://{s3.bucket}"
    refused = _probe(s3, target)
    if refused is None or s3.sse is None:
        return [] if refused is None else [refused]
    # The same write without encryption tells a refused key (or a store without SSE)
    # from wrong credentials or a missing bucket, which would fail either way.
    plain = s3.model_copy(update={"sse": None, "kms_key_id": None})
    if _probe(plain, target) is not None:
        return [refused]
    if s3.kms_key_id is not None:
        setting = "SLUICEWAY_S3_KMS_KEY_ID"
        what = f"KMS key {s3.kms_key_id!r} ({setting})"
    else:
        what = f"server-side encryption {s3.sse} (SLUICEWAY_S3_SSE)"
    return [f"the store at {s3.endpoint_url} refused {what}; writes without it succeed: {refused}"]


def _probe(s3: S3Settings, target: str) -> str | None:
    from sluiceway.lake.storage import open_lake

    try:
        open_lake(target, s3)
    except SluicewayError as exc:
        return str(exc)
    return None


def s3_problems(s3: S3Settings, destination: str | None = None) -> list[str]:
    return credential_problems(s3) or write_problems(s3, destination)
