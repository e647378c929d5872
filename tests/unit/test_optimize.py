"""One optimization end to end with a scripted LM: real DSPy optimizers, the dataset store, the version store."""

import json
from pathlib import Path

import dspy
import pytest
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.files import load_examples
from ratchet.data.records import ExampleRecord
from ratchet.data.sampling import seeded_sample
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.optimize.run import run_optimization
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore

BANKING = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77" / "train.jsonl"


@pytest.fixture
def workspace(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    registry = load_programs(settings)
    spec = registry.get("classify_intent")
    examples = seeded_sample(load_examples(BANKING, spec.schema).examples, 150, 0)
    records = [ExampleRecord(values={"text": e.text, "intent": e.intent}, signature=spec.name, source="manual")
               for e in examples]
    version = DatasetStore(settings.home_dir, settings.data, registry=registry).create(
        spec.name, records, source="manual").version
    labels = {e.text: e.intent for e in examples}
    return settings, registry, version, labels


def scripted_bundle(responder) -> tuple[LMBundle, ScriptedEngine]:
    engine = ScriptedEngine(responder)
    lm = dspy.LM("scripted/opt", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                 num_retries=0)
    return LMBundle.for_lm(lm, CompletionAdapter()), engine


def knows_with_demos(labels: dict[str, str]):
    """A model that answers right only when the prompt carries demos (like a small base model, but extreme)."""

    def respond(prompt: str) -> str:
        question = prompt.rsplit("Text:", 1)[-1].split("\n", 1)[0].strip()
        if prompt.count("Text:") > 2 and question in labels:
            return " " + labels[question]
        return " terminate_account"

    return respond


def test_identical_programs_are_not_deployed(workspace) -> None:
    settings, registry, version, _ = workspace
    bundle, _ = scripted_bundle(lambda prompt: " card_arrival")
    result = run_optimization(settings, registry, "classify_intent", dataset_version=version, optimizer="labeled",
                              lms=bundle)
    cmp = result.comparison
    assert cmp["mean_difference"] == 0 and cmp["ci_low"] <= 0 <= cmp["ci_high"]
    assert not result.deploy and "keep baseline" in result.decision["reason"]
    assert result.usage["lm_calls_total"] == 0  # LabeledFewShot compiles without the LM


def test_a_better_candidate_is_deployed_and_registered(workspace) -> None:
    settings, registry, version, labels = workspace
    bundle, _ = scripted_bundle(knows_with_demos(labels))
    result = run_optimization(settings, registry, "classify_intent", dataset_version=version, optimizer="labeled",
                              lms=bundle)
    assert result.deploy and result.comparison["ci_low"] > 0
    assert result.sizes["train"] > 0 and result.sizes["test"] > 0
    meta = VersionStore(settings.home_dir).get("classify_intent", result.candidate_version)
    assert meta.parent == "base" and meta.dataset_version == version and meta.optimizer == "labeled"
    assert meta.optimizer_params["k"] == 40 and meta.scores["decision"]["deploy"]
    loaded = VersionStore(settings.home_dir).load(registry.get("classify_intent"), result.candidate_version)
    assert len(loaded.demos) == 40
    intents = {d["intent"] for d in loaded.demos}
    assert len(intents) == 10  # class-balanced


@pytest.mark.parametrize("optimizer", ["bootstrap", "mipro"])
def test_optimizers_that_call_the_lm_are_metered(workspace, optimizer: str) -> None:
    settings, registry, version, labels = workspace
    bundle, engine = scripted_bundle(knows_with_demos(labels))
    phases = []
    result = run_optimization(settings, registry, "classify_intent", dataset_version=version, optimizer=optimizer,
                              trials=2, lms=bundle, progress=lambda phase, done, total: phases.append(phase))
    usage = result.usage
    assert usage["lm_calls_total"] > 0 and usage["tokens"]["input"] > 0
    assert usage["lm_calls_total"] <= engine.calls
    if optimizer == "mipro":
        assert usage["lm_calls"].get("prompt", 0) > 0  # instruction proposals
    assert usage["lm_calls"].get("teacher", 0) > 0  # bootstrapped demos
    assert {"optimize", "evaluate"} <= set(phases)
    assert result.candidate.score >= result.baseline.score


def test_unknown_optimizer_and_missing_dataset_are_clear_errors(workspace, tmp_path: Path) -> None:
    from ratchet.errors import ConfigError, DataError

    settings, registry, _, _ = workspace
    with pytest.raises(ConfigError, match="unknown optimizer 'magic'"):
        run_optimization(settings, registry, "classify_intent", optimizer="magic")
    with pytest.raises(DataError):
        run_optimization(settings, registry, "extract_booking", optimizer="labeled")


def test_programs_cli_versions_show_diff_promote(workspace, tmp_path: Path) -> None:
    settings, registry, version, labels = workspace
    bundle, _ = scripted_bundle(knows_with_demos(labels))
    first = run_optimization(settings, registry, "classify_intent", dataset_version=version, optimizer="labeled",
                             lms=bundle).candidate_version
    (tmp_path / "ratchet.toml").write_text(f'home = "{settings.home_dir}"\n')
    runner = CliRunner()
    listed = runner.invoke(app, ["programs", "versions", "classify_intent", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert data["production"] == "base" and data["versions"][0]["version"] == first
    shown = runner.invoke(app, ["programs", "show", "classify_intent", first, "--json"])
    assert len(json.loads(shown.stdout)["predictors"]["self"]["demos"]) == 40
    diff = runner.invoke(app, ["programs", "diff", "classify_intent", "base", first, "--json"])
    change = json.loads(diff.stdout)["predictors"]["self"]
    assert change["demos_before"] == 0 and len(change["demos_added"]) == 40
    human = runner.invoke(app, ["programs", "diff", "classify_intent", "base", first])
    assert "demos: 0 → 40" in human.stdout
    promoted = runner.invoke(app, ["programs", "promote", "classify_intent", first])
    assert promoted.exit_code == 0 and VersionStore(settings.home_dir).projected_production("classify_intent") == first
    missing = runner.invoke(app, ["programs", "promote", "classify_intent", "v99"])
    assert missing.exit_code == 2 and "no version 'v99'" in missing.stderr
