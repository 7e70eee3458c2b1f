"""Flask CLI commands: `flask api-key create`, `flask monitor`."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from auth import create_api_key
from config import runtime

api_key_cli = AppGroup("api-key", help="Manage API keys of the management API.")


@api_key_cli.command("create")
@click.option("--read-only", is_flag=True, help="The key may only read (GET).")
@click.argument("name")
def create_api_key_command(name: str, read_only: bool) -> None:
    """Create an API key; the key is printed once, alone on the last line."""
    api_key, plaintext = create_api_key(name, read_only, runtime().clock.now())
    access = "read-only" if read_only else "read-write"
    click.echo(f"Created {access} API key {api_key.name!r} (id {api_key.id}). "
               "Store it now; it is not shown again:")
    click.echo(plaintext)




@click.command("monitor")
@with_appcontext
def monitor_command() -> None:
    """Run the monitor and alert delivery in the foreground until SIGTERM or Ctrl-C."""
    import signal

    from background import Background
    app = current_app._get_current_object()
    background = Background(app).start()

    def _stop(signum, frame):
        background.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo("monitor running; Ctrl-C to stop", err=True)
    background.wait()
    background.stop()


def register_cli(app: Flask) -> None:
    app.cli.add_command(api_key_cli)
    app.cli.add_command(monitor_command)
