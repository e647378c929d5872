"""``ratchet config``: show the effective configuration."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import typer
from rich.syntax import Syntax

from ratchet.cli.output import console, print_json
from ratchet.cli.state import get_state
from ratchet.config import Settings

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)

_SECRET_KEY = re.compile(r"(password|secret|token|api_key$|webhook_url|credential)", re.IGNORECASE)
MASK = "********"


def mask_secrets(node: Any, key: str = "") -> Any:
    """A copy of JSON data with every secret-looking value masked (``*_env`` names of variables stay)."""
    if isinstance(node, dict):
        return {k: mask_secrets(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [mask_secrets(v, key) for v in node]
    if node not in (None, "") and _SECRET_KEY.search(key) and not key.endswith("_env"):
        return MASK
    return node


def masked_config(settings: Settings) -> dict[str, Any]:
    """The effective settings as JSON data, secrets masked, the home directory resolved."""
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
