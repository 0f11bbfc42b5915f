"""S3Proxy of the local stack: an S3 API over a local folder (filesystem-nio2 backend).

Layout under ``<home>/s3proxy``: ``s3proxy.jar`` (resolved by Maven from
deploy/s3proxy/pom.xml), ``data/`` (one folder per bucket), ``s3proxy.conf``,
``s3proxy.log``, ``pid``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pyarrow import fs

from sluiceway.common.errors import StackDownError
from sluiceway.common.resources import stack_files
from sluiceway.common.settings import LOCAL_S3_KEYS, S3Settings, StackSettings
from sluiceway.devstack import tools
from sluiceway.devstack.base import (
    ServerStatus,
    file_digest,
    live_pid,
    pid_alive,
    port_open,
    run_logged,
    spawn,
    terminate,
    wait_until,
)

NAME = "s3proxy"
MARKER = "s3proxy.jar"
HEAP = "256m"
STOP_TIMEOUT_S = 30.0
MVN_TIMEOUT_S = 900.0
RESOLVED_MARKER = "s3proxy.jar.pom-sha256"


def deploy_dir() -> Path:
    return stack_files("s3proxy")


def render_s3proxy_conf(s3: S3Settings, data_dir: Path) -> str:
    """s3proxy.conf: AWS v2/v4 signatures with the settings' keys, files under data_dir."""
    keys = s3.static_keys() or LOCAL_S3_KEYS
    props = {
        "s3proxy.endpoint": f"http://{s3.host}:{s3.port}",
        "s3proxy.authorization": "aws-v2-or-v4",
        "s3proxy.identity": keys[0],
        "s3proxy.credential": keys[1],
        "jclouds.provider": "filesystem-nio2",
        "jclouds.filesystem.basedir": str(data_dir.resolve()),
        "jclouds.region": s3.region,
    }
    lines = ["# Written by `sluiceway stack up`; edits are overwritten on the next start."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def filesystem(s3: S3Settings, *, allow_bucket_creation: bool = False) -> fs.S3FileSystem:
    """A pyarrow S3FileSystem on the stack's own address that fails fast instead of retrying."""
    return fs.S3FileSystem(
        endpoint_override=f"{s3.host}:{s3.port}",
        scheme="http",
        access_key=(s3.static_keys() or LOCAL_S3_KEYS)[0],
        secret_key=(s3.static_keys() or LOCAL_S3_KEYS)[1],
        region=s3.region,
        connect_timeout=2,
        request_timeout=5,
        retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=1),
        allow_bucket_creation=allow_bucket_creation,
    )


def answers(s3: S3Settings) -> bool:
    """True when listing buckets works with the settings' keys."""
    if not port_open(s3.host, s3.port):
        return False
    s3fs = filesystem(s3)
    try:
        s3fs.get_file_info(fs.FileSelector("", recursive=False))
    except OSError:
        return False
    return True


def ensure_bucket(s3: S3Settings) -> None:
    """Create S3Settings.bucket unless it exists."""
    s3fs = filesystem(s3, allow_bucket_creation=True)
    if s3fs.get_file_info(s3.bucket).type == fs.FileType.NotFound:
        s3fs.create_dir(s3.bucket)


class S3ProxyServer:
    """up/status/down of the local stack's S3Proxy."""

    name = NAME

    def __init__(self, stack: StackSettings, s3: S3Settings) -> None:
        self.stack = stack
        self.s3 = s3
        self.dir = stack.home / "s3proxy"
        self.jar = self.dir / "s3proxy.jar"
        self.data = self.dir / "data"
        self.conf = self.dir / "s3proxy.conf"
        self.log_file = self.dir / "s3proxy.log"
        self.pid_file = self.dir / "pid"

    @property
    def address(self) -> str:
        return f"{self.s3.host}:{self.s3.port}"

    def status(self) -> ServerStatus:
        return ServerStatus(
            name=NAME,
            running=port_open(self.s3.host, self.s3.port),
            pid=live_pid(self.pid_file, MARKER),
            address=self.address,
            data_dir=self.data,
            log_file=self.log_file,
        )

    def up(self) -> ServerStatus:
        """Start S3Proxy unless it answers, wait until listing buckets works, add the bucket."""
        if not answers(self.s3):
            pid = live_pid(self.pid_file, MARKER)
            if pid is None:
                java = tools.find_java()
                self.resolve_jar()
                self.data.mkdir(parents=True, exist_ok=True)
                self.conf.write_text(render_s3proxy_conf(self.s3, self.data))
                pid = spawn(self._command(java), self.log_file, self.pid_file, self.dir, _ENV)
            started = pid
            wait_until(
                lambda: answers(self.s3),
                name=NAME,
                address=self.address,
                log_file=self.log_file,
                timeout_s=self.stack.start_timeout_s,
                alive=lambda: pid_alive(started, MARKER),
            )
        ensure_bucket(self.s3)
        return self.status()

    def down(self) -> ServerStatus:
        terminate(live_pid(self.pid_file, MARKER), MARKER, STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)
        return self.status()

    def _command(self, java: Path) -> list[str]:
        return [
            str(java), f"-Xmx{HEAP}", "-Djava.awt.headless=true",
            "-jar", str(self.jar), "--properties", str(self.conf),
        ]  # fmt: skip

    def resolve_jar(self) -> None:
        """Fetch the jar-with-dependencies with Maven into s3proxy.jar, unless already there."""
        pom = deploy_dir() / "pom.xml"
        marker = self.dir / RESOLVED_MARKER
        fresh = marker.is_file() and marker.read_text().strip() == file_digest(pom)
        if fresh and self.jar.is_file():
            return
        mvn = tools.find_mvn()
        download = self.dir / "download"
        shutil.rmtree(download, ignore_errors=True)
        download.mkdir(parents=True)
        cmd = [
            str(mvn), "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={download}", "-DexcludeTransitive=true",
        ]  # fmt: skip
        run_logged(
            cmd, self.dir / "mvn.log", "s3proxy: resolving the jar with Maven", MVN_TIMEOUT_S
        )
        jars = sorted(download.glob("s3proxy-*-jar-with-dependencies.jar"))
        if not jars:
            raise StackDownError(f"s3proxy: Maven fetched no s3proxy jar into {download}")
        jars[0].replace(self.jar)
        shutil.rmtree(download, ignore_errors=True)
        marker.write_text(file_digest(pom) + "\n")


# S3Proxy logs through logback; its bundled logback.xml reads these variables.
_ENV = {"LOG_LEVEL": "warn", "JETTY_LOG_LEVEL": "warn"}
