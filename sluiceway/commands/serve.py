"""``sluiceway serve``: run the REST control API until SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import sys

import typer

from sluiceway.cli import friendly_errors
from sluiceway.common.settings import KafkaSettings, S3Settings


@friendly_errors
def serve(
    host: str = typer.Option(
        "127.0.0.1", help="Address to bind; the default keeps the API off the network."
    ),
    port: int = typer.Option(18400, help="Port to listen on."),
) -> None:
    """Serve the control API (Data pipeline endpoints and /runs); needs SLUICEWAY_API_TOKEN."""
    import uvicorn

    from sluiceway.api.app import Services, create_app
    from sluiceway.api.auth import load_api_settings

    api = load_api_settings()
    services = Services.build(
        KafkaSettings(), S3Settings(), api.token, roots=api.roots, max_body_bytes=api.max_body_bytes
    )
    app = create_app(services)
    typer.echo(f"control API on http://{host}:{port} (OpenAPI at /docs)", err=True)
    # uvicorn handles SIGTERM/SIGINT itself: it stops accepting, drains, then ends the
    # lifespan, which joins the scheduler thread. Afterwards it re-raises the signal to the
    # handler it found: this one, so a clean stop exits 0 (143 would read as a failure); a
    # SIGTERM before uvicorn listens exits 0 at once, as nothing is running yet.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
