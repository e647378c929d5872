"""``ratchet collect synthetic`` with scripted LMs: stratification, validation and the stop conditions."""

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import dspy
import pytest
import typer
from typer.testing import CliRunner

from ratchet.cli import collect_cmd
from ratchet.cli.main import RatchetGroup
from ratchet.cli.state import CliState
from ratchet.config import Settings
from ratchet.data.collect import SyntheticCollector, difficulty_quotas, load_seed_examples
from ratchet.data.collect.synthetic import generation_signature
from ratchet.data.records import read_batch
from ratchet.errors import DataError
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.programs import load_programs

HINT = re.compile(r"Hint: intent (\w+), (\w+)\nText:$")


class RecordingEngine(ScriptedEngine):
    """A scripted engine that also keeps each request's sampling settings."""

    def __init__(self, responder) -> None:
        super().__init__(responder)
        self.configs: list[tuple[float | None, int | None]] = []

    def complete(self, request):
        self.configs.append((request.config.temperature, request.config.seed))
        return super().complete(request)


def bundle(responder) -> tuple[LMBundle, RecordingEngine]:
    engine = RecordingEngine(responder)
    lm = dspy.LM("scripted/synth", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                 num_retries=0)
    return LMBundle.for_lm(lm, CompletionAdapter()), engine


def good_writer():
    counter = itertools.count(1)

    def respond(prompt: str) -> str:
        intent, difficulty = HINT.search(prompt).groups()
        n = next(counter)
        words = {"easy": "short", "medium": "somewhat longer", "hard": "much longer and more involved"}[difficulty]
        return f" Question {n}: a {words} message about {intent.replace('_', ' ')}\nIntent: {intent}"

    return respond


@pytest.fixture(scope="module")
def registry():
    return load_programs(Settings())


@pytest.fixture(scope="module")
def intent_seeds(registry):
    return load_seed_examples(registry.get("classify_intent"))[0]


def test_a_good_model_reaches_the_target_with_the_stratified_spread(registry, intent_seeds, tmp_path: Path) -> None:
    lms, engine = bundle(good_writer())
    spec = registry.get("classify_intent")
    report = SyntheticCollector(spec, lms, intent_seeds, target=20, seed=3).collect(tmp_path / "out")

    assert report.complete and report.collected == 20 and report.examined == 20 and not report.skipped
    assert report.stopped == "target reached after 20 attempts"
    examples = read_batch(tmp_path / "out" / "classify_intent.jsonl")
    assert Counter(e.values["intent"] for e in examples) == {choice: 2 for choice in spec.schema.outputs[0].choices}
    assert Counter(e.difficulty for e in examples) == {"easy": 6, "medium": 10, "hard": 4}
    assert report.counts["by_difficulty"] == {"easy": 6, "medium": 10, "hard": 4}
    first = examples[0]
    assert first.source == "synthetic" and first.category == first.values["intent"]
    assert set(first.metadata) == {"seed", "attempt", "hint", "model", "temperature"}
    assert first.metadata["seed"] == 3 and first.metadata["model"] == "scripted/synth"
    assert first.metadata["hint"] == f"intent {first.values['intent']}, {first.difficulty}"
    assert all(0.8 <= t <= 1.0 for t, _ in engine.configs)
    assert len({seed for _, seed in engine.configs}) == 20  # every attempt samples differently

    prompt = engine.prompts[0]
    hinted = HINT.search(prompt).group(1)
    demo_intents = re.findall(r"^Intent: (\w+)$", prompt, re.MULTILINE)
    assert len(demo_intents) == 8 and set(demo_intents) == {hinted}  # demos of the hinted category
    assert "Write a new, realistic example" in prompt


def test_garbage_stops_after_the_consecutive_failure_cap(registry, intent_seeds, tmp_path: Path) -> None:
    lms, engine = bundle(lambda prompt: "lorem ipsum dolor sit amet")
    report = SyntheticCollector(registry.get("classify_intent"), lms, intent_seeds, target=10).collect(tmp_path / "o")
    assert report.collected == 0 and report.examined == 20 and engine.calls == 20
    assert report.skipped == {"parse_error": 20}
    assert report.stopped == "stopped after 20 consecutive failed attempts"
    assert report.hints and "0 valid examples of 10" in report.hints[0] and "parse_error 20" in report.hints[0]
    assert report.summary() == "collected: 0 examples, target: 10 (20 attempts examined; skipped: parse_error 20)"
    assert (tmp_path / "o" / "classify_intent.jsonl").read_text() == ""
    saved = json.loads((tmp_path / "o" / "collection_report.json").read_text())
    assert saved["complete"] is False and saved["errors"][0].startswith("parse_error: attempt 1 (intent ")


def test_invalid_candidates_are_counted_by_reason(registry, intent_seeds, tmp_path: Path) -> None:
    seed_text = intent_seeds[0]["text"]
    replies = itertools.cycle([
        f" {seed_text.upper()}\nIntent: {{intent}}",  # a seed, shouted: still a copy
        " A brand new question\nIntent: exchange_rate",  # the wrong label (unless hinted)
        "\nIntent: {intent}",  # empty text
        " A brand new question\nIntent: {intent}",  # accepted once...
        " a BRAND new question!\nIntent: {intent}",  # ...then a duplicate
        " Something\nIntent: not_an_intent",
    ])

    def respond(prompt: str) -> str:
        return next(replies).format(intent=HINT.search(prompt).group(1))

    lms, _ = bundle(respond)
    report = SyntheticCollector(registry.get("classify_intent"), lms, intent_seeds, target=5, max_attempts=12,
                                seed=1).collect(tmp_path / "out")
    assert report.stopped == "attempt budget spent: 12 attempts"
    assert report.examined == 12 and report.collected + sum(report.skipped.values()) == 12
    assert report.skipped["copied_seed"] == 2
    assert report.skipped["parse_error"] == 4  # no text at all, and not_an_intent is not a valid choice
    assert report.collected == 1  # "a brand new question", once
    assert report.skipped["duplicate"] + report.skipped["label_mismatch"] == 5
    assert any("label_mismatch" in e and "got 'exchange_rate'" in e for e in report.errors)


def test_the_attempt_budget_defaults_to_five_times_the_target(registry, intent_seeds, tmp_path: Path) -> None:
    writer = good_writer()
    calls = itertools.count()

    def sometimes(prompt: str) -> str:
        return writer(prompt) if next(calls) % 7 == 0 else "nonsense"  # never 20 failures in a row

    lms, _ = bundle(sometimes)
    report = SyntheticCollector(registry.get("classify_intent"), lms, intent_seeds, target=4).collect(tmp_path / "o")
    assert report.stopped == "attempt budget spent: 20 attempts"
    assert report.collected == 3 and report.skipped == {"parse_error": 17}


def test_programs_without_a_label_field(registry, tmp_path: Path) -> None:
    spec = registry.get("extract_booking")
    seeds, source = load_seed_examples(spec)
    assert source.name == "train.jsonl" and len(seeds) > 1000
    counter = itertools.count()

    def respond(prompt: str) -> str:
        return (f" Table for {next(counter) + 2} people please\nPeople: a few\nDate: none\nTime: none\n"
                "First name: none\nLast name: none")

    lms, _ = bundle(respond)
    report = SyntheticCollector(spec, lms, seeds, target=3).collect(tmp_path / "out")
    assert report.collected == 3
    assert {e.category for e in read_batch(tmp_path / "out" / "extract_booking.jsonl")} == {"people"}
    assert "hint" in generation_signature(spec).input_fields


def test_seed_examples_come_from_a_file_or_the_latest_dataset(registry, tmp_path: Path) -> None:
    spec = registry.get("classify_commit")
    with pytest.raises(DataError, match=r"no seed examples for 'classify_commit'.*--seed-examples"):
        load_seed_examples(spec, home=tmp_path / "home")
    latest = tmp_path / "home" / "training_data" / "classify_commit" / "latest"
    latest.mkdir(parents=True)
    (latest / "dataset.json").write_text(json.dumps({"examples": [
        {"subject": "add pagination", "type": "feat", "_meta": {"source": "git"}},
        {"subject": "handle empty input", "type": "fix"},
    ]}))
    seeds, source = load_seed_examples(spec, home=tmp_path / "home")
    assert source == latest / "dataset.json" and [s["type"] for s in seeds] == ["feat", "fix"]
    mined = tmp_path / "mined.jsonl"
    mined.write_text('{"subject": "fix typo in docs", "type": "docs"}\n{"subject": "x", "type": "nope"}\n')
    seeds, _ = load_seed_examples(spec, mined)
    assert seeds == [{"subject": "fix typo in docs", "type": "docs"}]
    (tmp_path / "bad.jsonl").write_text('{"subject": "x", "type": "nope"}\n')
    with pytest.raises(DataError, match="no usable seed examples"):
        load_seed_examples(spec, tmp_path / "bad.jsonl")


def test_difficulty_quotas() -> None:
    assert difficulty_quotas(10) == {"easy": 3, "medium": 5, "hard": 2}
    assert difficulty_quotas(3) == {"easy": 1, "medium": 1, "hard": 1}
    assert difficulty_quotas(1) == {"easy": 0, "medium": 1, "hard": 0}
    assert sum(difficulty_quotas(37).values()) == 37


def test_cli(registry, tmp_path: Path) -> None:
    root = typer.Typer(cls=RatchetGroup)
    root.add_typer(collect_cmd.app, name="collect")
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps({"subject": s, "type": t}) + "\n" for s, t in [
        ("add pagination to the list endpoint", "feat"), ("handle empty input in the parser", "fix"),
        ("rewrite the install guide", "docs"), ("cover the retry policy", "test")]))

    def respond(prompt: str) -> str:
        kind = re.search(r"Hint: type (\w+), \w+\nSubject:$", prompt).group(1)
        return f" a new {kind} change number {len(prompt)}\nType: {kind}"

    lms, _ = bundle(respond)
    state = CliState()
    state._lms = lms
    runner = CliRunner()
    args = ["collect", "synthetic", "--signature", "classify_commit", "--target", "4", "--output", "out",
            "--seed-examples", "seeds.jsonl", "--seed", "7"]
    result = runner.invoke(root, [*args, "--json"], obj=state)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["collected"] == 4 and data["parameters"]["seed_examples"] == "seeds.jsonl"
    assert data["counts"]["by_category"] == {"feat": 1, "fix": 1, "docs": 1, "test": 1}
    human = runner.invoke(root, args, obj=state)
    assert human.exit_code == 0 and "collected: 4 examples, target: 4" in human.stdout
    missing = runner.invoke(root, ["collect", "synthetic", "-s", "classify_commit", "--target", "2", "-o", "o"],
                            obj=state)
    assert missing.exit_code == 2 and "--seed-examples" in missing.stderr
