"""The completion webhook: backoff schedule, retries, deadline, secrets, a real local server."""

from __future__ import annotations

import functools
import json
import logging
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from sluiceway.common.settings import settings_problem
from sluiceway.sinks import metrics
from sluiceway.sinks.consume import notification
from sluiceway.sinks.guard_config import GuardSettings
from sluiceway.sinks.notify import backoff_delays, deliver, post_json, safe_url
from tests.manifests import run_manifest

NOTE = {"event": "run_complete", "etl_id": "20261122T010203Z-ab12", "rows": {"issue": 3}}
TOKEN = "s3cr3t-token-value"


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def settings(**overrides: Any) -> GuardSettings:
    base: dict[str, Any] = {"webhook_url": "http://127.0.0.1:9/hook", "webhook_backoff_s": 0.5}
    return GuardSettings(**{**base, **overrides})


def failing(times: int) -> tuple[list[str], Any]:
    calls: list[str] = []

    def send(url: str, body: bytes, token: str | None, timeout: float) -> int:
        calls.append(url)
        if len(calls) <= times:
            raise OSError("HTTP 500")
        return 200

    return calls, send


def counter(c: Any) -> float:
    return float(c._value.get())


def test_backoff_doubles_from_half_a_second_and_caps_at_30() -> None:
    assert backoff_delays(6) == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert backoff_delays(10)[-3:] == [30.0, 30.0, 30.0]
    assert backoff_delays(1) == []
    assert backoff_delays(4, first_s=1.0, max_s=3.0) == [1.0, 2.0, 3.0]


def test_retries_with_backoff_until_the_webhook_accepts() -> None:
    t = FakeTime()
    calls, send = failing(2)
    attempts, failures = counter(metrics.WEBHOOK_ATTEMPTS), counter(metrics.WEBHOOK_FAILURES)
    assert deliver(NOTE, settings(), send=send, sleep=t.sleep, clock=t.clock)
    assert len(calls) == 3
    assert t.slept == [0.5, 1.0]
    assert counter(metrics.WEBHOOK_ATTEMPTS) - attempts == 3
    assert counter(metrics.WEBHOOK_FAILURES) - failures == 2


def test_gives_up_after_max_attempts_with_one_line_per_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = FakeTime()
    calls, send = failing(100)
    undelivered = counter(metrics.WEBHOOK_UNDELIVERED)
    with caplog.at_level(logging.INFO, logger="sluiceway.sink"):
        s = settings(webhook_max_attempts=4)
        ok = deliver(NOTE, s, send=send, sleep=t.sleep, clock=t.clock)
    assert not ok
    assert len(calls) == 4 and t.slept == [0.5, 1.0, 2.0]
    lines = [r.getMessage() for r in caplog.records]
    assert sum("failed" in line for line in lines) == 4
    assert "did not get the notice" in lines[-1] and NOTE["etl_id"] in lines[-1]
    assert counter(metrics.WEBHOOK_UNDELIVERED) - undelivered == 1


def test_the_total_deadline_stops_retries_before_max_attempts() -> None:
    t = FakeTime()
    calls, send = failing(100)
    s = settings(webhook_max_attempts=20, webhook_deadline_s=5.0)
    assert not deliver(NOTE, s, send=send, sleep=t.sleep, clock=t.clock)
    # waits 0.5 + 1 + 2 = 3.5s; the next wait (4s) would pass the 5s deadline
    assert t.slept == [0.5, 1.0, 2.0] and len(calls) == 4


def test_no_url_sends_nothing() -> None:
    calls, send = failing(0)
    assert not deliver(NOTE, GuardSettings(), send=send, sleep=lambda _: None)
    assert calls == []


def test_the_token_and_url_credentials_never_reach_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = FakeTime()
    seen: list[str | None] = []

    def send(url: str, body: bytes, token: str | None, timeout: float) -> int:
        seen.append(token)
        raise OSError("connection refused")

    s = settings(
        webhook_url="https://user:pw@hooks.example/x?key=abc",
        webhook_token=SecretStr(TOKEN),
        webhook_max_attempts=2,
    )
    with caplog.at_level(logging.DEBUG, logger="sluiceway.sink"):
        deliver(NOTE, s, send=send, sleep=t.sleep, clock=t.clock)
    assert seen == [TOKEN, TOKEN]
    assert TOKEN not in caplog.text and "pw" not in caplog.text and "key=abc" not in caplog.text
    assert "https://hooks.example/x" in caplog.text
    assert TOKEN not in repr(s)
    assert safe_url("http://a:b@127.0.0.1:8080/p?q=1") == "http://127.0.0.1:8080/p"


def test_settings_come_from_the_environment_and_refuse_non_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLUICEWAY_SINK_WEBHOOK_URL", "https://localhost:8000/done")
    monkeypatch.setenv("SLUICEWAY_SINK_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("SLUICEWAY_SINK_MIN_FREE_BYTES", "-1")
    s = GuardSettings()
    assert s.webhook_url == "https://localhost:8000/done"
    assert s.webhook_token is not None and s.webhook_token.get_secret_value() == TOKEN
    assert s.min_free_bytes == -1
    with pytest.raises(ValidationError, match="http"):
        GuardSettings(webhook_url="file:///etc/passwd")


def test_the_notice_names_destination_run_type_and_rows_per_table() -> None:
    manifest = run_manifest({
        "etl_id": NOTE["etl_id"],
        "type": "full",
        "spec": {"destination": "/lake"},
        "tables": {"issue": {"rows": 3, "files": []}, "user": {"rows": 0, "files": []}},
    })  # fmt: skip
    assert notification(manifest) == {
        "event": "run_complete",
        "destination": "/lake",
        "etl_id": NOTE["etl_id"],
        "type": "full",
        "manifest": f"_runs/{NOTE['etl_id']}.json",
        "rows": {"issue": 3, "user": 0},
    }


@dataclass
class Hook:
    """A local webhook that answers 500 to its first ``fail`` requests, then 200."""

    fail: int = 2
    redirect: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    @property
    def bodies(self) -> list[Any]:
        return [json.loads(body) for _, body in self.requests]


@functools.cache
def hook_certificate() -> Path:
    """A self-signed certificate (and its key, in the same file) for 127.0.0.1, made once.

    Clients trust it through SSL_CERT_FILE, which OpenSSL reads for its default CA file."""
    pem = Path(tempfile.mkdtemp(prefix="sw-hook-tls-")) / "hook.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(pem.with_suffix(".key")), "-out", str(pem)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    pem.write_text(pem.read_text() + pem.with_suffix(".key").read_text())
    return pem


@contextmanager
def serve_hook(fail: int = 2, redirect: bool = False, tls: bool = False) -> Iterator[Hook]:
    """Run a Hook on 127.0.0.1 in a thread for the block's duration; https with ``tls``
    (the client must trust ``hook_certificate()``)."""
    hook = Hook(fail=fail, redirect=redirect)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                hook.requests.append((dict(self.headers.items()), body))
                n = len(hook.requests)
            if hook.redirect:
                self.send_response(307)
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            else:
                self.send_response(500 if n <= hook.fail else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(hook_certificate())
        server.socket = context.wrap_socket(server.socket, server_side=True)
    hook.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_local_webhook_failing_twice_gets_the_notice_on_the_third_try(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(hook_certificate()))
    with serve_hook(fail=2, tls=True) as hook:
        s = settings(webhook_url=hook.url, webhook_token=SecretStr(TOKEN), webhook_backoff_s=0.01)
        assert deliver(NOTE, s)
    assert len(hook.requests) == 3
    assert hook.bodies == [NOTE, NOTE, NOTE]
    headers = hook.requests[-1][0]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"


def test_post_json_raises_on_5xx_and_never_follows_redirects() -> None:
    with serve_hook(fail=1) as hook:
        with pytest.raises(OSError, match="500"):
            post_json(hook.url, b"{}", None, 5.0)
        assert post_json(hook.url, b"{}", None, 5.0) == 200
    with serve_hook(fail=0, redirect=True) as hook:
        with pytest.raises(OSError, match="307"):
            post_json(hook.url, b"{}", TOKEN, 5.0)
        assert len(hook.requests) == 1  # the token went nowhere else


@pytest.mark.parametrize(
    ("url", "token", "needle"),
    [
        ("https://hooks.example:99999/x", None, "invalid port"),
        ("https://hooks.example:0/x", None, "invalid port"),
        ("https://hooks.example:http/x", None, "invalid port"),
        ("http://hooks.example/x", TOKEN, "WEBHOOK_TOKEN: would be sent in clear"),
        ("http://user:pw@hooks.example/x", None, "plain http"),
        ("http://hooks.example/x?api_key=abc", None, "plain http"),
    ],
)
def test_webhooks_that_would_fail_or_leak_are_refused_at_start(
    url: str, token: str | None, needle: str
) -> None:
    secret = SecretStr(token) if token else None
    with pytest.raises(ValidationError) as caught:
        GuardSettings(webhook_url=url, webhook_token=secret)
    problem = settings_problem(caught.value)
    assert problem is not None and needle in problem
    assert "pw" not in problem and TOKEN not in problem and "abc" not in problem
    assert "pw" not in str(caught.value) and TOKEN not in str(caught.value)
    if "invalid port" not in needle:  # the same over https is fine
        https = url.replace("http://", "https://")
        assert GuardSettings(webhook_url=https, webhook_token=secret).webhook_url == https


def test_a_plain_http_webhook_without_secrets_is_fine() -> None:
    url = "http://hooks.example:8080/x?run=1"
    assert GuardSettings(webhook_url=url).webhook_url == url
