"""``ratchet predict`` and ``ratchet eval``: run a registered program on the configured LM."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import dspy
import typer
from dspy.utils.exceptions import AdapterParseError
from rich.table import Table

from ratchet.cli.output import console, print_json, progress_bar
from ratchet.cli.state import get_state
from ratchet.data.files import labelled_examples
from ratchet.data.sampling import seeded_sample
from ratchet.errors import DataError
from ratchet.evaluation import evaluate_program, fewshot_program, prediction_tokens
from ratchet.programs.schema import ProgramSchema


def parse_input_pairs(pairs: list[str], schema: ProgramSchema) -> dict[str, Any]:
    """``field=value`` pairs → validated inputs (non-string fields take JSON values)."""
    types = {f.name: f for f in schema.inputs}
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise DataError(f"--input {pair!r}: expected field=value")
        field = types.get(name)
        values[name] = field.parse_text(raw) if field is not None else raw
    return schema.validate_inputs(values)


def predict(
    ctx: typer.Context,
    signature: str = typer.Argument(..., help="registered signature name"),
    inputs: list[str] = typer.Option([], "--input", "-i", help="field=value (repeatable)"),
    k_shot: int = typer.Option(0, "--k-shot", min=0, help="class-balanced demos from the program's train data"),
    seed: int = typer.Option(0, "--seed", help="seed for demo selection"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run one prediction and print the outputs, latency and tokens."""
    state = get_state(ctx)
    spec = state.registry.get(signature)
    values = parse_input_pairs(inputs, spec.schema)
    bundle = state.lms()
    module = fewshot_program(spec, k_shot, seed=seed)
    bundle.warm_up()
    started = time.perf_counter()
    try:
        with dspy.context(track_usage=True):
            prediction = module(**values)
    except AdapterParseError as exc:
        latency = time.perf_counter() - started
        if as_json:
            print_json({"signature": signature, "error": "AdapterParseError", "message": str(exc),
                        "completion": exc.lm_response, "latency_s": round(latency, 4)})
        else:
            console.print(f"[bold red]unparsable completion[/] after {latency:.2f} s: {exc.lm_response!r}")
        raise typer.Exit(1) from None
    latency = time.perf_counter() - started
    outputs = {name: prediction.get(name) for name in spec.schema.output_names}
    tokens = prediction_tokens(prediction)
    if as_json:
        print_json({"signature": signature, "inputs": values, "outputs": outputs, "latency_s": round(latency, 4),
                    "tokens": tokens, "model": bundle.model_id, "adapter": bundle.adapter_name, "k_shot": k_shot})
        return
    table = Table(show_header=False, box=None)
    for name, value in outputs.items():
        table.add_row(f"[bold]{name}[/]", "[dim]none[/]" if value is None else str(value))
    console.print(table)
    console.print(f"[dim]{latency:.3f} s · {tokens} tokens · {bundle.model_id} · {bundle.adapter_name}"
                  f" · {k_shot}-shot[/]")


def evaluate(
    ctx: typer.Context,
    signature: str = typer.Argument(..., help="registered signature name"),
    data: Path | None = typer.Option(None, "--data", help="labelled examples (.jsonl/.json/.csv); "
                                     "default: the program's bundled test split"),
    k_shot: int = typer.Option(0, "--k-shot", min=0, help="class-balanced demos from the train data"),
    train: Path | None = typer.Option(None, "--train", help="where demos come from (default: bundled train)"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="score N examples of a seeded shuffle"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", min=1, help="concurrent calls (the local model serialises)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Score a program on labelled data: metric, parse-failure rate, seconds per call."""
    state = get_state(ctx)
    spec = state.registry.get(signature)
    loaded = labelled_examples(spec, data)
    source = loaded.path
    examples = seeded_sample(loaded.examples, limit, seed)
    trainset = labelled_examples(spec, train, split="train").examples if train else None
    bundle = state.lms()
    module = fewshot_program(spec, k_shot, seed=seed, trainset=trainset)
    bundle.warm_up()

    with progress_bar(enabled=not as_json) as progress:
        task = progress.add_task(f"eval {signature}", total=len(examples), status="")
        seen: list[float] = []

        def on_result(result: Any) -> None:
            seen.append(result.score)
            progress.update(task, advance=1, status=f"score {sum(seen) / len(seen):.3f}")

        report = evaluate_program(module, examples, spec.metric, num_threads=threads, on_result=on_result)

    summary = {"signature": signature, "data": str(source), "k_shot": k_shot, "model": bundle.model_id,
               "adapter": bundle.adapter_name, "skipped_rows": loaded.skipped, **report.summary()}
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"{signature} on {Path(source).name} ({k_shot}-shot)", title_justify="left", box=None)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("examples", str(report.n))
    table.add_row("score", f"{report.score:.3f}")
    table.add_row("parse failures", f"{report.parse_failures} ({report.parse_failure_rate:.1%})")
    table.add_row("other errors", str(report.errors))
    table.add_row("seconds per call (median)", f"{report.seconds_per_call:.3f}")
    table.add_row("tokens", str(report.tokens))
    if loaded.skipped:
        table.add_row("rows skipped in data", str(loaded.skipped))
    console.print(table)
    console.print(f"[dim]{bundle.model_id} · {bundle.adapter_name} · {report.total_seconds:.1f} s total[/]")
