"""The ``auto`` optimizer through ``run_optimization`` with a scripted LM: what it picks, what it records, budgets."""

import dspy
import pytest
from test_optimize import knows_with_demos, scripted_bundle, workspace  # noqa: F401 — the fixture

from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.optimize.run import run_optimization
from ratchet.programs.versions import VersionStore


def needs_many_demos(labels: dict[str, str], at_least: int):
    """Right only when the prompt carries at least ``at_least`` demos (a caricature of a small base model)."""

    def respond(prompt: str) -> str:
        question = prompt.rsplit("Text:", 1)[-1].split("\n", 1)[0].strip()
        if prompt.count("Text:") - 1 >= at_least and question in labels:
            return " " + labels[question]
        return " terminate_account"

    return respond


def test_auto_searches_demo_sets_and_records_every_candidate(workspace) -> None:  # noqa: F811
    settings, registry, version, labels = workspace
    bundle, _ = scripted_bundle(needs_many_demos(labels, 30))
    result = run_optimization(settings, registry, "classify_intent", dataset_version=version, lms=bundle)
    assert result.optimizer == "auto"  # the default
    search = result.parameters["demo_search"]
    assert len(search["candidates"]) == 10 and search["max_demos_that_fit"] == 40  # no tokenizer: 40
    assert search["candidates"][0]["candidate"] == "incumbent: LabeledFewShot's 40 demos"
    assert search["winner"] == search["candidates"][0]["candidate"]  # the 40-demo sets tie: the incumbent stays
    assert not search["incumbent_challenge"]["winner_replaces_incumbent"]
    assert all(c["dev_score"] < 0.5 for c in search["candidates"] if c["size"] < 30)
    assert sum(c["calls"] for c in search["candidates"]) == search["calls"] < 10 * result.sizes["dev"]
    assert result.parameters["instruction_search"]["status"] == "skipped"  # no budget: half the search's time
    assert result.parameters["winner"] == "demo search: " + search["winner"]
    assert result.deploy
    meta = VersionStore(settings.home_dir).get("classify_intent", result.candidate_version)
    assert meta.optimizer == "auto" and meta.optimizer_params["demo_search"]["winner"] == search["winner"]
    loaded = VersionStore(settings.home_dir).load(registry.get("classify_intent"), result.candidate_version)
    assert len(loaded.demos) == 40 and len({d["intent"] for d in loaded.demos}) == 10


def test_with_a_budget_mipro_searches_instructions_and_must_beat_the_demos(workspace) -> None:  # noqa: F811
    settings, registry, version, labels = workspace
    bundle, _ = scripted_bundle(knows_with_demos(labels))
    result = run_optimization(settings, registry, "classify_intent", dataset_version=version, lms=bundle,
                              budget_minutes=5, trials=3)
    instructions = result.parameters["instruction_search"]
    assert instructions["trials"] == 3, instructions
    assert instructions["status"] == "not better"  # instructions cannot change this model's answers
    assert instructions["comparison"]["mean_difference"] == 0
    assert result.usage["lm_calls"].get("prompt", 0) > 0  # MIPROv2 proposed instructions
    loaded = VersionStore(settings.home_dir).load(registry.get("classify_intent"), result.candidate_version)
    assert loaded.signature.instructions == registry.get("classify_intent").signature.instructions
    assert result.parameters["budget_minutes"] == 5


def test_a_spent_budget_stops_the_search_with_the_best_so_far(workspace) -> None:  # noqa: F811
    settings, registry, version, labels = workspace
    engine = ScriptedEngine(knows_with_demos(labels), latency_s=0.05)
    lm = dspy.LM("scripted/slow", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                 num_retries=0)
    result = run_optimization(settings, registry, "classify_intent", dataset_version=version,
                              lms=LMBundle.for_lm(lm, CompletionAdapter()), budget_minutes=0.01)
    search = result.parameters["demo_search"]
    assert search["stopped"] and "deadline" in search["stopped"]
    assert result.parameters["instruction_search"]["status"] == "skipped"
    assert result.candidate_version is not None


def test_for_a_chat_model_auto_is_mipro(workspace) -> None:  # noqa: F811
    settings, registry, version, labels = workspace
    settings.lm.base_model = False
    bundle, _ = scripted_bundle(knows_with_demos(labels))
    result = run_optimization(settings, registry, "classify_intent", dataset_version=version, lms=bundle, trials=2)
    assert result.parameters["strategy"] == "mipro (chat model)" and result.parameters["winner"] == "mipro"
    assert "demo_search" not in result.parameters
    assert result.usage["lm_calls"].get("prompt", 0) > 0


@pytest.mark.parametrize("value", [True, False])
def test_base_model_setting_overrides_the_adapter(workspace, value: bool) -> None:  # noqa: F811
    from ratchet.optimize.run import is_base_model

    settings, _, _, _ = workspace
    bundle, _ = scripted_bundle(lambda prompt: " card_arrival")
    assert is_base_model(settings, bundle)  # behind the completion adapter
    settings.lm.base_model = value
    assert is_base_model(settings, bundle) is value


def test_a_chat_model_whose_budget_runs_out_keeps_its_program(workspace) -> None:  # noqa: F811
    settings, registry, version, labels = workspace
    settings.lm.base_model = False
    engine = ScriptedEngine(knows_with_demos(labels), latency_s=0.05)
    lm = dspy.LM("scripted/slow", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                 num_retries=0)
    result = run_optimization(settings, registry, "classify_intent", dataset_version=version,
                              lms=LMBundle.for_lm(lm, CompletionAdapter()), budget_minutes=0.02, trials=4)
    assert result.parameters["refused_calls_past_deadline"] > 0
    assert result.seconds["optimize"] < 60
