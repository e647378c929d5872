"""``ratchet config``: show the effective configuration."""

from __future__ import annotations

import json
import os
from typing import Any

import typer
from rich.syntax import Syntax

from ratchet.cli.output import console, print_json
from ratchet.cli.state import get_state
from ratchet.config import Settings, mask_secrets

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


def masked_config(settings: Settings) -> dict[str, Any]:
    """The effective settings as JSON data, secrets (by key name, and in any URL) masked, the home resolved."""
    data = mask_secrets(settings.model_dump(mode="json"))
    data["home"] = str(settings.home_dir)
    return data


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Render nested settings as TOML text (values JSON-encoded, which TOML accepts for these types)."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and (scalars or not tables) else []
    for key, value in scalars.items():
        if value is None:
            lines.append(f"# {key} = (not set)")
        else:
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    text = "\n".join(lines)
    for key, value in tables.items():
        child = to_toml(value, f"{prefix}.{key}" if prefix else key)
        text = f"{text}\n\n{child}" if text else child
    return text


@app.command("show")
def show(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Print the effective configuration (file + RATCHET_* variables), secrets masked."""
    settings = get_state(ctx).settings
    data = masked_config(settings)
    env = sorted(k for k in os.environ if k.startswith("RATCHET_"))
    if as_json:
        print_json({"config_file": str(settings.config_file) if settings.config_file else None,
                    "environment": env, "settings": data})
        return
    source = str(settings.config_file) if settings.config_file else "no config file (defaults)"
    console.print(f"[dim]# from: {source}[/]")
    if env:
        console.print(f"[dim]# environment overrides: {', '.join(env)}[/]")
    console.print(Syntax(to_toml(data), "toml", theme="ansi_dark", background_color="default"))
