"""``ratchet cleanup``, ``ratchet backup`` and ``ratchet restore``: retention and disaster recovery."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from ratchet.cli.output import console, print_json, progress_bar
from ratchet.cli.state import get_state

_JSON = typer.Option(False, "--json", help="machine-readable output")


def human_bytes(n: int) -> str:
    """``1536`` → ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(phase, done, total)`` callback drawing one bar per phase on stderr."""
    with progress_bar(enabled=enabled, transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=max(total, 1), status="bytes")
            bar.update(tasks[phase], completed=done, total=max(total, 1))

        yield update


def cleanup(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be removed; change nothing"),
    as_json: bool = _JSON,
) -> None:
    """Apply retention: old telemetry, dataset versions (archived), run dirs, alerts, DSPy's disk cache, DB rows."""
    from ratchet.ops.cleanup import run_cleanup

    state = get_state(ctx)
    report = run_cleanup(state.settings, state.registry, dry_run=dry_run)
    if as_json:
        print_json(report.to_dict())
    else:
        verb = "would remove or archive" if dry_run else "removed or archived"
        table = Table(title=f"cleanup of {report.home}" + (" — dry run, nothing changed" if dry_run else ""),
                      title_justify="left")
        for column, justify in (("what", "left"), ("action", "left"), ("count", "right"), ("size", "right"),
                                ("rule", "left")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for step in report.steps:
            action = f"would be {step.action}" if dry_run else step.action
            size = human_bytes(step.bytes) if step.bytes else ""
            rule = step.rule if not step.error else f"[red]error: {step.error}[/]"
            table.add_row(step.name, action, str(step.count), size, rule)
        console.print(table)
        for step in report.steps:
            for note in step.skipped:
                console.print(f"[yellow]skipped[/] {step.name}: {note}", highlight=False, soft_wrap=True)
        console.print(f"{verb} {human_bytes(report.bytes)} in total", highlight=False)
    raise typer.Exit(1 if report.errors else 0)


def backup(
    ctx: typer.Context,
    output: Path = typer.Option(..., "--output", "-o", help="the archive to write (e.g. ratchet-backup.tar.gz)"),
    include_telemetry: bool = typer.Option(False, "--include-telemetry", help="also the telemetry logs"),
    as_json: bool = _JSON,
) -> None:
    """Write one verified archive: program versions, datasets, experiments, routing, config and the state database."""
    from ratchet.ops.backup import create_backup

    settings = get_state(ctx).settings
    with _progress(not as_json) as progress:
        result = create_backup(settings, output, include_telemetry=include_telemetry, progress=progress)
    if as_json:
        print_json(result.to_dict())
        return
    db = result.database["dialect"] if result.database else "no database"
    console.print(f"[bold green]backup written[/]: {result.path} ({human_bytes(result.archive_bytes)}, "
                  f"{result.members} members, {human_bytes(result.bytes)} uncompressed, {db})",
                  highlight=False, soft_wrap=True)
    if result.signed_with is None:
        console.print("[yellow]unsigned[/]: RATCHET_BACKUP_KEY is not set; `ratchet restore` will refuse this "
                      "archive unless given --allow-unsigned", highlight=False, soft_wrap=True)
    if result.skipped:
        console.print(f"[yellow]{len(result.skipped)} file(s) vanished while reading[/]: "
                      f"{', '.join(result.skipped[:5])}", highlight=False, soft_wrap=True)


def _warn_unsigned(status: str) -> None:
    if status == "unsigned":
        console.print("[yellow]unsigned[/]: the archive carries no signature, so nothing proves it is the one "
                      "`ratchet backup` wrote (accepted with --allow-unsigned)", highlight=False, soft_wrap=True)


def restore(
    ctx: typer.Context,
    archive: Path = typer.Argument(..., help="an archive written by `ratchet backup`"),
    home: Path | None = typer.Option(None, "--home", help="restore into this home (default: the configured one)"),
    force: bool = typer.Option(False, "--force", help="replace a non-empty home / database"),
    verify_only: bool = typer.Option(False, "--verify-only", help="check every member; restore nothing"),
    allow_unsigned: bool = typer.Option(False, "--allow-unsigned",
                                        help="accept an archive written without RATCHET_BACKUP_KEY (trust its source)"),
    as_json: bool = _JSON,
) -> None:
    """Verify an archive and its signature (RATCHET_BACKUP_KEY), then restore files and the state database."""
    from ratchet.ops.backup import restore_backup, verify_backup

    settings = get_state(ctx).settings
    key = settings.backup_key.get_secret_value() if settings.backup_key else None
    with _progress(not as_json) as progress:
        if verify_only:
            manifest = verify_backup(archive, key=key, allow_unsigned=allow_unsigned, progress=progress)
        else:
            result = restore_backup(settings, archive, home=home, force=force, allow_unsigned=allow_unsigned,
                                    progress=progress)
    if verify_only:
        summary = {"archive": str(archive), "ok": True, "members": len(manifest["members"]),
                   "created": manifest.get("created"), "ratchet_version": manifest.get("ratchet_version"),
                   "database": manifest.get("database"), "signature": manifest["verified"]}
        if as_json:
            print_json(summary)
        else:
            console.print(f"[bold green]ok[/]: {archive}: {summary['members']} members verified, "
                          f"{manifest['verified']} (backup of {summary['created']}, "
                          f"ratchet {summary['ratchet_version']})", highlight=False, soft_wrap=True)
            _warn_unsigned(manifest["verified"])
        return
    if as_json:
        print_json(result.to_dict())
        return
    _warn_unsigned(result.signature)
    console.print(f"[bold green]restored[/] {result.members} members ({human_bytes(result.bytes)}) from the backup "
                  f"of {result.backup_created} (ratchet {result.backup_version}) into {result.home}",
                  highlight=False, soft_wrap=True)
    if result.database:
        console.print(f"state database → {result.database}", highlight=False, soft_wrap=True)
    if result.config_file:
        console.print(f"config file → {result.config_file} (copy it to where `ratchet` reads its config)",
                      highlight=False, soft_wrap=True)
    deletions = result.deletions or {}
    if deletions.get("reapplied"):
        console.print(f"user data deletions applied again: {deletions['reapplied']}", highlight=False)
    if deletions.get("failed"):
        console.print(f"[bold red]re-applying deletions failed at {', '.join(deletions['failed'])}[/]: run "
                      "`ratchet privacy reapply` once the cause is fixed", highlight=False)
        raise typer.Exit(1)
