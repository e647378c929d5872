"""``ratchet keys``: API keys for the HTTP API: create (shown once), list, revoke, rotate. Every change is audited."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from ratchet.cli.output import console, err_console, print_json
from ratchet.cli.state import get_state
from ratchet.store.db import StateDB

app = typer.Typer(help="API keys and their roles (predict, feedback, read, operator, annotate, admin). Only a hash "
                       "of each key is stored; a key is shown once, when it is made.", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="machine-readable output")


def _db(ctx: typer.Context) -> StateDB:
    return StateDB.connect(get_state(ctx).settings)


def _when(at: float | None) -> str:
    return "—" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def _show_new(key: str, row_dict: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        print_json({**row_dict, "key": key})
        return
    err_console.print(f"{verb} key [bold]{row_dict['name']}[/] ({row_dict['key_id']}) with role(s) "
                      f"{', '.join(row_dict['roles'])}. Store it now: it is not shown again.", highlight=False)
    console.print(key, highlight=False, soft_wrap=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="who or what uses the key, e.g. checkout-service"),
    role: list[str] = typer.Option(..., "--role", help="predict, feedback, read, operator or admin (repeat or "
                                                       "comma-separate for several)"),
    expires_days: float | None = typer.Option(None, "--expires-days", help="the key stops working after this"),
    as_json: bool = _JSON,
) -> None:
    """Make a key and print it once (stdout); only its hash is stored."""
    from ratchet.audit import audited, resolve_actor
    from ratchet.auth import create_key

    settings = get_state(ctx).settings
    with audited(settings, "keys.create", target=name, details={"roles": role, "expires_days": expires_days}) as note:
        key, row = create_key(_db(ctx), name, role, created_by=resolve_actor(None), expires_days=expires_days)
        note.details["key_id"] = row.key_id
    _show_new(key, row.to_dict(), as_json, "Created")


@app.command("list")
def list_cmd(ctx: typer.Context, show_all: bool = typer.Option(False, "--all", help="revoked and expired keys too"),
             as_json: bool = _JSON) -> None:
    """Keys with their roles, age and last use (never the keys themselves)."""
    from ratchet.auth import list_keys

    now = time.time()
    keys = [key.to_dict(now) for key in list_keys(_db(ctx), include_inactive=show_all, now=now)]
    if as_json:
        print_json({"keys": keys})
        return
    if not keys:
        console.print("no keys (create one with `ratchet keys create --name NAME --role ROLE`)")
        return
    table = Table(title="API keys")
    for column in ("name", "key id", "roles", "status", "age (days)", "last used", "expires"):
        table.add_column(column)
    for key in keys:
        style = {"active": "green", "revoked": "red", "expired": "yellow"}[key["status"]]
        table.add_row(key["name"], key["key_id"], ", ".join(key["roles"]), f"[{style}]{key['status']}[/]",
                      f"{key['age_days']:g}", _when(key["last_used_at"]), _when(key["expires_at"]))
    console.print(table)


@app.command("revoke")
def revoke(ctx: typer.Context, ref: str = typer.Argument(..., help="a key id, or a name (revokes all its keys)"),
           as_json: bool = _JSON) -> None:
    """Stop a key now (servers notice within auth.cache_seconds)."""
    from ratchet.audit import audited
    from ratchet.auth import revoke_keys

    settings = get_state(ctx).settings
    with audited(settings, "keys.revoke", target=ref) as note:
        revoked = revoke_keys(_db(ctx), ref)
        note.details["key_ids"] = [key.key_id for key in revoked]
    if as_json:
        print_json({"revoked": [key.key_id for key in revoked]})
        return
    for key in revoked:
        console.print(f"revoked [bold]{key.name}[/] ({key.key_id})", highlight=False)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="a key id, or a name (its newest active key)"),
    grace_hours: float = typer.Option(24.0, "--grace-hours", help="the old key keeps working this long"),
    expires_days: float | None = typer.Option(None, "--expires-days", help="default: the old key's lifetime"),
    as_json: bool = _JSON,
) -> None:
    """Replace a key with a new one of the same name and roles; print the new key once."""
    from ratchet.audit import audited, resolve_actor
    from ratchet.auth import rotate_key

    settings = get_state(ctx).settings
    with audited(settings, "keys.rotate", target=ref, details={"grace_hours": grace_hours}) as note:
        key, new, old = rotate_key(_db(ctx), ref, created_by=resolve_actor(None), grace_hours=grace_hours,
                                   expires_days=expires_days)
        note.details.update(old_key_id=old.key_id, new_key_id=new.key_id)
    _show_new(key, {**new.to_dict(), "replaces": old.key_id}, as_json, "Rotated; new")
