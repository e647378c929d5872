"""Terminal output shared by every command: consoles, JSON, progress bars, errors."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ratchet.store.private import make_private_dir, private_opener

__all__ = ["captured_output", "console", "err_console", "fail", "print_json", "progress_bar", "version_progress"]

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line: grep-able, copy-able


def print_json(value: Any) -> None:
    """Machine output on stdout: one JSON document."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error on stderr and exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def progress_bar(*, transient: bool = False, enabled: bool = True) -> Progress:
    """A Rich progress bar on stderr (so ``--json`` stdout stays clean)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),  # bound now: captured_output() inside the bar does not swallow it
        transient=transient,
        disable=not enabled,
    )


def version_progress(progress: Progress) -> Callable[[str, str, int, int], None]:
    """An ``on_progress(signature, version, done, total)`` callback showing one bar per signature and version."""
    tasks: dict[tuple[str, str], Any] = {}

    def on_progress(signature: str, version: str, done: int, total: int) -> None:
        if (signature, version) not in tasks:
            tasks[signature, version] = progress.add_task(f"{signature} {version}", total=total, status="")
        progress.update(tasks[signature, version], completed=done)

    return on_progress


@contextlib.contextmanager
def captured_output(path: Path) -> Iterator[Path]:
    """Send what libraries print while this block runs (DSPy optimizers' prints and tqdm bars) to ``path``,
    so the terminal shows Ratchet's progress bar and ``--json`` keeps stdout to one JSON document."""
    make_private_dir(path.parent)
    with (open(path, "a", encoding="utf-8", opener=private_opener) as log, contextlib.redirect_stdout(log),
          contextlib.redirect_stderr(log)):
        yield path
