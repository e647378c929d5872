"""``ratchet data``: validate raw examples (schema, quality, dedup) and run the quality gates."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ratchet.cli.output import console, err_console, print_json, progress_bar
from ratchet.cli.state import get_state
from ratchet.config.settings import GateThresholds
from ratchet.data.files import read_records
from ratchet.data.gates import GateCheck, GateReport, gate_thresholds, run_gates
from ratchet.data.records import ExampleRecord, read_batch, utc_now, write_batch
from ratchet.data.validate import ValidationResult, validate_examples
from ratchet.errors import DataError, UnknownProgramError
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.atomic import atomic_write_json, atomic_write_text
from ratchet.store.jsonl import JsonlReadStats
from ratchet.store.private import make_private_dir

app = typer.Typer(help="Validate raw examples (schema, quality, duplicates) and enforce quality gates.",
                  no_args_is_help=True)

REJECTED_FILE = "rejected.jsonl"
REPORT_FILE = "validation_report.json"
LARGE = 2_000  # show a progress bar from this many examples on

_JSON = typer.Option(False, "--json", help="machine-readable output")


class Against(StrEnum):
    latest = "latest"
    none = "none"


# -- validate ------------------------------------------------------------------------------------


@app.command("validate")
def validate(
    ctx: typer.Context,
    input_path: Path = typer.Option(..., "--input", "-i", help="raw examples: a .jsonl/.json/.csv file or a "
                                    "directory of them"),
    output: Path = typer.Option(..., "--output", "-o", help="directory for <signature>.jsonl, rejected.jsonl "
                                "and validation_report.json"),
    signature: str | None = typer.Option(None, "--signature", "-s", help="signature of examples that name none "
                                         "(examples of other signatures are skipped)"),
    against: Against = typer.Option(Against.latest, "--against-dataset", help="also drop duplicates of the "
                                    "signature's latest dataset version ('none': only within the input)"),
    as_json: bool = _JSON,
) -> None:
    """Check each example against its signature, score it 0–100, drop exact and near duplicates."""
    state = get_state(ctx)
    settings, registry = state.settings, state.registry
    if signature is not None:
        registry.get(signature)
    if output.exists() and not output.is_dir():
        raise DataError(f"--output {output} is a file; give a directory")
    stats = JsonlReadStats()
    records = read_batch(input_path, signature=signature, stats=stats)
    if not records:
        reasons = "; ".join(stats.errors[:3]) or "the input holds no examples"
        raise DataError(f"no readable examples in {input_path} ({stats.bad_lines} bad lines: {reasons}); "
                        "nothing written")
    groups = _by_signature(records, registry, input_path)
    existing = {sig: _latest_examples(settings.home_dir, sig) if against is Against.latest else ([], None)
                for sig in groups}

    results: dict[str, ValidationResult] = {}
    with progress_bar(enabled=not as_json and len(records) >= LARGE, transient=True) as progress:
        task = progress.add_task("validate", total=len(records), status="")
        for sig, batch in groups.items():
            progress.update(task, status=sig)
            results[sig] = validate_examples(batch, registry.get(sig), settings.data, existing=existing[sig][0],
                                             on_progress=lambda n: progress.update(task, advance=n))

    report = _validation_report(input_path, output, against, stats, len(records), results, existing)
    make_private_dir(output)  # everything is computed: now write, each file atomically (owner-only: user text)
    for sig, result in results.items():
        write_batch(output / f"{sig}.jsonl", result.accepted)
    rejected = [r.to_json() for result in results.values() for r in result.rejected]
    atomic_write_text(output / REJECTED_FILE, "".join(_line(r) for r in rejected))
    atomic_write_json(output / REPORT_FILE, report)
    if as_json:
        print_json(report)
        return
    _print_validation(report, stats)


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, default=str) + "\n"


def _by_signature(records: list[ExampleRecord], registry: ProgramRegistry, source: Path
                  ) -> dict[str, list[ExampleRecord]]:
    groups: dict[str, list[ExampleRecord]] = {}
    for record in records:
        groups.setdefault(record.signature, []).append(record)
    for sig, batch in groups.items():
        try:
            registry.get(sig)
        except UnknownProgramError as exc:
            raise UnknownProgramError(f"{source}: {len(batch)} example(s) of {exc}; nothing written") from None
    return groups


def _latest_examples(home: Path, signature: str) -> tuple[list[ExampleRecord], Path | None]:
    """The examples of the signature's latest dataset version (``latest`` symlink or pointer file), if any."""
    sig_dir = home / "training_data" / signature
    latest = sig_dir / "latest"
    if latest.is_dir():
        path = latest / "dataset.json"
    elif latest.is_file():
        path = sig_dir / latest.read_text(encoding="utf-8").strip() / "dataset.json"
    else:
        return [], None
    if not path.is_file():
        raise DataError(f"latest dataset of '{signature}' has no {path.name} ({path}); "
                        "repair it or pass --against-dataset none")
    raw, _ = read_records(path)
    records = []
    for item in raw:
        try:
            records.append(ExampleRecord.from_json(item, signature=signature))
        except ValueError:
            continue
    return records, path.resolve()


def _validation_report(input_path: Path, output: Path, against: Against, stats: JsonlReadStats, examples: int,
                       results: dict[str, ValidationResult],
                       existing: dict[str, tuple[list[ExampleRecord], Path | None]]) -> dict[str, Any]:
    signatures = {}
    for sig, result in results.items():
        dataset = existing[sig][1]
        signatures[sig] = {**result.report.to_dict(), "file": str(output / f"{sig}.jsonl"),
                           "against_dataset": None if dataset is None else str(dataset)}
    return {
        "created": utc_now(),
        "input": str(input_path),
        "output": str(output),
        "against_dataset": against.value,
        "read": {"lines": stats.lines, "examples": examples, "bad_lines": stats.bad_lines, "errors": stats.errors},
        "totals": {"examples": examples,
                   "accepted": sum(r.report.accepted for r in results.values()),
                   "rejected": sum(r.report.rejected for r in results.values()),
                   "seconds": round(sum(r.report.seconds for r in results.values()), 3)},
        "signatures": signatures,
        "files": {"rejected": str(output / REJECTED_FILE), "report": str(output / REPORT_FILE)},
    }


def _print_validation(report: dict[str, Any], stats: JsonlReadStats) -> None:
    table = Table(title=f"validated {report['input']}", title_justify="left")
    for column in ("signature", "examples", "accepted", "rejected", "quality mean · p10 · min", "difficulty e/m/h",
                   "categories", "seconds"):
        table.add_column(column, justify="left" if column in ("signature", "rejected", "quality mean · p10 · min")
                         else "right")
    for sig, row in report["signatures"].items():
        q = row["quality"]
        quality = "–" if q["mean"] is None else f"{q['mean']:.1f} · {q['p10']:.1f} · {q['min']:.1f}"
        diff = row["difficulty"]
        reasons = escape(", ".join(f"{code} {count}" for code, count in row["rejections"].items()))
        table.add_row(f"[bold]{sig}[/]", str(row["examples"]), f"[green]{row['accepted']}[/]",
                      f"{row['rejected']}" + (f"\n[dim]{reasons}[/]" if reasons else ""), quality,
                      "/".join(str(diff.get(d, 0)) for d in ("easy", "medium", "hard")), str(len(row["categories"])),
                      f"{row['seconds']:.2f}")
    console.print(table)
    if stats.bad_lines:
        console.print(f"[yellow]{stats.bad_lines} unreadable line(s) skipped[/]")
        for error in stats.errors[:5]:
            console.print(f"  [dim]{escape(error)}[/]", highlight=False)
    for sig, row in report["signatures"].items():
        if row["against_dataset"]:
            console.print(f"[dim]{sig}: also deduplicated against {row['seeded']} examples of "
                          f"{row['against_dataset']}[/]", highlight=False)
    console.print(f"[dim]wrote {', '.join(row['file'] for row in report['signatures'].values())}, "
                  f"{report['files']['rejected']}, {report['files']['report']}[/]", highlight=False)


# -- gate ----------------------------------------------------------------------------------------


@app.command("gate")
def gate(
    ctx: typer.Context,
    input_path: Path = typer.Option(..., "--input", "-i", help="validated examples: a file, or the directory "
                                    "`ratchet data validate` wrote (its <signature>.jsonl is used)"),
    signature: str = typer.Option(..., "--signature", "-s", help="registered signature name"),
    strict: bool = typer.Option(False, "--strict/--no-strict", help="exit 1 when a check fails (production); "
                                "default: warn and exit 0"),
    report_path: Path | None = typer.Option(None, "--report", help="also write the report as JSON here"),
    as_json: bool = _JSON,
) -> None:
    """Check a batch against the signature's quality gates: quality, difficulty, completeness, diversity.

    Examples without a category get the one the program names (``category=``, else the label).
    """
    state = get_state(ctx)
    registry = state.registry
    spec = registry.get(signature)
    stats = JsonlReadStats()
    records = read_batch(_gate_files(input_path, signature), signature=signature, stats=stats)
    if not records:
        reasons = "; ".join(stats.errors[:3]) or "no examples"
        raise DataError(f"no readable examples of '{signature}' in {input_path} ({stats.bad_lines} skipped: "
                        f"{reasons})")
    for record in records:  # the program names the category of an example that brings none
        if record.category is None:
            record.category = spec.category(record.values)
    thresholds = gate_thresholds(signature, state.settings.data)
    report = run_gates(records, thresholds, signature=signature)
    document = {**report.to_dict(), "input": str(input_path), "strict": strict,
                "read": {"lines": stats.lines, "examples": len(records), "bad_lines": stats.bad_lines,
                         "errors": stats.errors}}
    if report_path is not None:
        atomic_write_json(report_path, document)
    if as_json:
        print_json(document)
    else:
        _print_gates(report, thresholds, input_path)
    if report.passed:
        return
    failed = ", ".join(check.name for check in report.failed)
    if strict:
        for check in report.failed:
            err_console.print(f"quality_gates: reject, reason: {check.name}: {escape(check.message)}", highlight=False)
        err_console.print(f"[bold red]quality gates failed[/] for {signature} ({failed}); batch rejected",
                          highlight=False)
        raise typer.Exit(1)
    err_console.print(f"[yellow]warning:[/] quality gates failed for {signature} ({failed}); accepted anyway "
                      "(use --strict to reject)", highlight=False)


def _gate_files(path: Path, signature: str) -> list[Path]:
    """The examples to gate: a file; or in a directory ``<signature>.jsonl``, else every example file but the
    validator's ``rejected.jsonl`` and ``validation_report.json``."""
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if not path.is_dir():
        return [path]
    own = path / f"{signature}.jsonl"
    if own.is_file():
        return [own]
    files = [p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")
             and p.name.endswith((".jsonl", ".json", ".jsonl.gz", ".csv"))
             and p.name not in (REJECTED_FILE, REPORT_FILE)]
    if not files:
        raise DataError(f"{path}: no example files ({signature}.jsonl, *.jsonl, *.json)")
    return files


def _expected(check: GateCheck, thresholds: GateThresholds) -> str:
    if check.name == "min_quality":
        return f"≥ {thresholds.min_quality:g}"
    if check.name == "category_diversity":
        return f"≥ {thresholds.min_categories}"
    if check.name == "source_diversity":
        return f"≤ {thresholds.max_source_share:.0%} per source"
    targets = check.expected["targets"]
    return " / ".join(f"{share:.0%} {key}" for key, share in targets.items()) + f" ± {check.expected['tolerance']:.0%}"


def _print_gates(report: GateReport, thresholds: GateThresholds, input_path: Path) -> None:
    verdict = "[bold green]passed[/]" if report.passed else "[bold red]failed[/]"
    table = Table(title=f"quality gates · {report.signature} · {report.examples} examples · {verdict}",
                  title_justify="left")
    for column in ("check", "result", "expected", "found"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        result = "[green]pass[/]" if check.passed else "[red]FAIL[/]"
        table.add_row(check.name, result, escape(_expected(check, thresholds)), escape(check.message))
    console.print(table)
    console.print(f"[dim]input: {escape(str(input_path))}[/]", highlight=False)
