"""``ratchet init``: write a commented ratchet.toml and an example programs module."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import typer

from ratchet.cli.output import console, fail
from ratchet.store.atomic import atomic_write_text
from ratchet.store.private import SHARED_FILE

TEMPLATES = ("ratchet.toml", "ratchet_programs.py")


def init(
    directory: Path = typer.Argument(Path("."), help="where to create the workspace"),
    force: bool = typer.Option(False, "--force", help="overwrite existing files"),
) -> None:
    """Create a workspace: a commented ratchet.toml and ratchet_programs.py to edit."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = [name for name in TEMPLATES if (directory / name).exists()]
    if existing and not force:
        fail(f"{', '.join(str(directory / n) for n in existing)} already exist(s); use --force to overwrite")
    source = files("ratchet").joinpath("templates")
    for name in TEMPLATES:
        # Project files to edit and commit, without secrets: readable like any file the user creates.
        atomic_write_text(directory / name, source.joinpath(name).read_text(encoding="utf-8"), mode=SHARED_FILE)
        console.print(f"wrote [bold]{directory / name}[/]")
    console.print("next: [bold]ratchet programs list[/], then "
                  "[bold]ratchet predict classify_intent --input text=\"Where is my card?\" --k-shot 20[/]")
