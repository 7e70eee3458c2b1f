"""Flask CLI commands: `flask api-key create|list|revoke`, `flask ping-key create|list|revoke`,
`flask import-healthchecks`, `flask monitor`."""
from __future__ import annotations

import signal

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from auth import create_api_key, list_api_keys, revoke_api_key
from background import Background
from exceptions import AppError
from healthchecks_import import ImportFailed, apply_plan, fetch_source, plan_import
from ping_keys import create_ping_key, display_key, list_ping_keys, revoke_ping_key
from runtime import current_runtime
from utils.clock import utc_iso

api_key_cli = AppGroup("api-key", help="Manage API keys of the management API.")


@api_key_cli.command("create")
@click.option("--read-only", is_flag=True, help="The key may only read (GET).")
@click.argument("name")
def create_api_key_command(name: str, read_only: bool) -> None:
    """Create an API key; the key is printed once, alone on the last line."""
    api_key, plaintext = create_api_key(name, read_only, current_runtime().clock.now())
    access = "read-only" if read_only else "read-write"
    click.echo(f"Created {access} API key {api_key.name!r} (id {api_key.id}). "
               "Store it now; it is not shown again:")
    click.echo(plaintext)


@api_key_cli.command("list")
def list_api_keys_command() -> None:
    """List keys by id, prefix and name (never the keys themselves)."""
    for api_key in list_api_keys():
        access = "read-only" if api_key.read_only else "read-write"
        state = f"revoked {utc_iso(api_key.revoked_at)}" if api_key.revoked_at else "active"
        click.echo(f"{api_key.id}\thbm_{api_key.prefix}_…\t{access}\t{state}\t{api_key.name}")


@api_key_cli.command("revoke")
@click.argument("prefix")
def revoke_api_key_command(prefix: str) -> None:
    """Revoke the key whose prefix (the part after `hbm_`) is PREFIX; it stops working at once."""
    api_key = revoke_api_key(prefix, current_runtime().clock.now())
    if api_key is None:
        raise click.ClickException(f"No active key with prefix {prefix!r}.")
    click.echo(f"Revoked API key {api_key.name!r} (id {api_key.id}).")


ping_key_cli = AppGroup("ping-key", help="Manage ping keys of slug ping URLs.")


@ping_key_cli.command("create")
@click.option("--key", default=None, metavar="KEY",
              help="Adopt this existing key (a Healthchecks project's ping key) instead.")
@click.argument("name")
def create_ping_key_command(name: str, key: str | None) -> None:
    """Create a ping key for /ping/<key>/<slug>; printed once, alone on the last line."""
    try:
        ping_key, plaintext = create_ping_key(name, current_runtime().clock.now(), key)
    except AppError as error:
        raise click.ClickException(f"{error.message}: {error.details}")
    click.echo(f"Created ping key {ping_key.name!r} (id {ping_key.id}). Slug ping URLs are "
               "/ping/<key>/<slug>. Store it now; it is not shown again:")
    click.echo(plaintext)


@ping_key_cli.command("list")
def list_ping_keys_command() -> None:
    """List ping keys by id, prefix and name (never the keys themselves)."""
    for ping_key in list_ping_keys():
        state = f"revoked {utc_iso(ping_key.revoked_at)}" if ping_key.revoked_at else "active"
        click.echo(f"{ping_key.id}\t{display_key(ping_key)}\t{state}\t{ping_key.name}")


@ping_key_cli.command("revoke")
@click.argument("prefix")
def revoke_ping_key_command(prefix: str) -> None:
    """Revoke the ping key whose prefix (as listed) is PREFIX; its URLs stop working at once."""
    ping_key = revoke_ping_key(prefix, current_runtime().clock.now())
    if ping_key is None:
        raise click.ClickException(f"No active ping key with prefix {prefix!r}.")
    click.echo(f"Revoked ping key {ping_key.name!r} (id {ping_key.id}).")


@click.command("import-healthchecks")
@click.option("--url", required=True, help="The Healthchecks instance, e.g. https://hc.example.com")
@click.option("--api-key", required=True, help="A read-write API key of its project.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@with_appcontext
def import_healthchecks_command(url: str, api_key: str, dry_run: bool) -> None:
    """Create (or update) an application for every check of a Healthchecks project, with the
    same UUID, and list its channels to recreate here."""
    try:
        source = fetch_source(url, api_key)
    except ImportFailed as error:
        raise click.ClickException(f"Nothing imported: {error}")
    plan = plan_import(source)
    if not dry_run:
        apply_plan(plan, current_runtime().clock.now())
    for line in plan.lines(dry_run):
        click.echo(line)


@click.command("monitor")
@with_appcontext
def monitor_command() -> None:
    """Run the monitor and alert delivery in the foreground until SIGTERM or Ctrl-C."""
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
    app.cli.add_command(ping_key_cli)
    app.cli.add_command(import_healthchecks_command)
    app.cli.add_command(monitor_command)
