"""A Parquet file written to and read back from the stack's S3Proxy through pyarrow.fs."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from tests.conftest import Stack

pytestmark = pytest.mark.integration


def test_parquet_round_trip_on_s3proxy(local_stack: Stack, unique: str) -> None:
    s3 = local_stack.s3
    filesystem = fs.S3FileSystem(
        endpoint_override=s3.endpoint_url.removeprefix("http://"),
        scheme="http",
        access_key=s3.static_keys()[0],
        secret_key=s3.static_keys()[1],
        region=s3.region,
    )
    table = pa.table({"id": list(range(1000)), "body": [f'ünï "{i}",\n' for i in range(1000)]})
    path = f"{s3.bucket}/smoke-{unique}/part-00000-{0:020d}.parquet"
    pq.write_table(table, path, filesystem=filesystem)
    info = filesystem.get_file_info(path)
    assert info.type == fs.FileType.File and info.size > 0
    assert pq.read_table(path, filesystem=filesystem).equals(table)
    filesystem.delete_dir(f"{s3.bucket}/smoke-{unique}")
    assert filesystem.get_file_info(path).type == fs.FileType.NotFound
