"""The real embedded model: Gemma 3 270M through llama.cpp, DSPy and the completion adapter."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import dspy
import pytest
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import Settings
from ratchet.evaluation import fewshot_program
from ratchet.programs import load_programs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def intent_program():
    spec = load_programs(Settings()).get("classify_intent")
    return spec, fewshot_program(spec, 20)


def test_model_id_carries_the_weights_hash(embedded) -> None:
    assert embedded.model_id == "llamacpp/gemma-3-270m-q4_k_m@sha256:a5fd3b62230aa5ec"
    assert embedded.adapter_name == "CompletionAdapter"


def test_a_real_prediction_is_a_valid_intent_with_usage(embedded, intent_program) -> None:
    spec, module = intent_program
    with dspy.context(lm=embedded.task, adapter=embedded.adapter, track_usage=True):
        prediction = module(text="I still have not received my new card, it has been two weeks")
    assert prediction.intent in spec.schema.outputs[0].choices
    usage = prediction.get_lm_usage()[embedded.model_id]
    assert usage["prompt_tokens"] > 200  # 20 demos
    assert usage["completion_tokens"] >= 1


def test_concurrent_calls_are_safe_and_deterministic(embedded, intent_program) -> None:
    _, module = intent_program
    texts = ["my card got stolen", "what is the exchange rate", "close my account please", "my pin is blocked"] * 3

    def run(text: str) -> str:
        with dspy.context(lm=embedded.task, adapter=embedded.adapter):
            return module(text=text).intent

    sequential = [run(t) for t in texts[:4]]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(run, texts))
    assert concurrent == sequential * 3


def test_async_engine(embedded, intent_program) -> None:
    _, module = intent_program

    async def run() -> str:
        with dspy.context(lm=embedded.task, adapter=embedded.adapter):
            results = await asyncio.gather(*(module.acall(text="where is my card") for _ in range(3)))
        return {r.intent for r in results}

    assert len(asyncio.run(run())) == 1


def test_grammar_keeps_zero_shot_answers_parseable(embedded) -> None:
    spec = load_programs(Settings()).get("classify_intent")
    with dspy.context(lm=embedded.task, adapter=embedded.adapter):
        prediction = spec.build()(text="How old do I need to be to open an account?")
    assert prediction.intent in spec.schema.outputs[0].choices


def test_cli_predict_and_eval_on_the_embedded_model() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "extract_booking", "--k-shot", "8", "--json",
                                 "--input", "text=A table for 4 at 7pm tomorrow, name is Maria Lopez"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["outputs"]) == {"people", "date", "time", "first_name", "last_name"}
    assert data["tokens"] > 0 and data["latency_s"] > 0

    result = runner.invoke(app, ["eval", "classify_intent", "--k-shot", "10", "--limit", "8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 8
    assert 0.0 <= report["score"] <= 1.0
    assert report["parse_failure_rate"] == 0.0  # choice scoring and the grammar leave no unparsable answers
    assert report["seconds_per_call"] > 0


def test_choice_scoring_picks_a_valid_label_and_calibration_changes_the_prior(embedded) -> None:
    from ratchet.lm import CompletionAdapter

    spec = load_programs(Settings()).get("classify_intent")
    texts = ["my card has not arrived yet", "I want to close my account", "what is the euro exchange rate",
             "can I use google pay", "my pin is blocked after three tries"]
    answers = {}
    for mode in ("likelihood", "calibrated"):
        with dspy.context(lm=embedded.task, adapter=CompletionAdapter(choice_scoring=mode)):
            answers[mode] = [spec.build()(text=t).intent for t in texts]
    choices = spec.schema.outputs[0].choices
    assert all(a in choices for mode in answers for a in answers[mode])
    assert len(set(answers["calibrated"])) >= 3  # calibration removes the zero-shot collapse onto one label



def test_each_extra_buffers_setting_runs_the_real_model_and_answers_alike(tmp_path, monkeypatch) -> None:
    """Forced both ways on whatever CPU this is: the real self-test passes and the engine answers the same."""
    from dspy.lm15 import Config, Message, Request

    from ratchet.lm import LlamaCppEngine, bundled_weights
    from ratchet.lm.llamacpp_native import compiled_features, cpu_info, resolve_extra_buffers

    monkeypatch.setenv("RATCHET_CACHE_DIR", str(tmp_path / "cache"))
    weights = bundled_weights()
    request = Request(model=weights.model_id, messages=(Message.user("The capital of France is"),),
                      config=Config(max_tokens=6, temperature=0.0))
    answers = {}
    for setting in ("on", "off", "auto"):
        engine = LlamaCppEngine(weights.path, model_id=weights.model_id, n_ctx=512, extra_buffers=setting,
                                weights_sha256=weights.sha256)
        try:
            engine.warm_up()
            result = engine.self_test_result
            assert result is not None and not result.cached and result.load_s > 0 and result.complete_s > 0
            expected = resolve_extra_buffers(setting, compiled_features(result.system_info), cpu_info())
            assert engine.extra_buffers == expected and result.extra_buffers["enabled"] is expected.enabled
            with engine._checkout() as llama:  # what llama.cpp was really given
                assert bool(llama.model_params.use_extra_bufts) is expected.enabled
            answers[setting] = engine.complete(request).message.text
        finally:
            engine.close()
    assert answers["on"] and answers["on"] == answers["off"] == answers["auto"]  # repacked or not: same greedy text


def test_greedy_grammar_sampler_answers_like_llama_cpp_python_full_filter(embedded) -> None:
    """Checking only the best token gives the same completion as filtering the whole vocabulary every step."""
    from llama_cpp import LlamaGrammar

    from ratchet.lm.answer_grammar import answer_grammar
    from ratchet.lm.engines.grammar import greedy_grammar

    spec = load_programs(Settings()).get("extract_booking")
    signature = spec.build().signature
    grammar = answer_grammar(signature, line_chars=40)
    engine = embedded.engine
    for text in ("Table for 3 please, Sunday at 7pm, name is Ana Ruiz", "do you serve Coke"):
        prompt = embedded.adapter.render(signature, [], {"text": text})
        with engine._checkout(prompt) as llama:
            reference = llama.create_completion(prompt=prompt, max_tokens=64, temperature=0.0,
                                                grammar=LlamaGrammar.from_string(grammar))
            with greedy_grammar(llama, grammar) as sampler:
                fast = llama.create_completion(prompt=prompt, max_tokens=64, temperature=0.0)
        assert fast["choices"][0]["text"] == reference["choices"][0]["text"]
        assert fast["choices"][0]["finish_reason"] == "stop"  # the grammar ended the answer
        assert sampler.steps > sampler.full_filters  # most steps checked one token


def test_a_typed_extraction_answers_zero_shot_in_field_form(embedded) -> None:
    """A user's signature with int, bool, list[str], Literal and optional fields parses on the first call."""

    class Order(dspy.Signature):
        """Read the customer's order."""

        text: str = dspy.InputField()
        quantity: int = dspy.OutputField(desc="how many items")
        express: bool = dspy.OutputField(desc="whether express delivery is asked for")
        items: list[str] = dspy.OutputField(desc="the products named")
        channel: Literal["web", "phone", "store"] = dspy.OutputField()
        coupon: str | None = dspy.OutputField(desc="a coupon code")

    with dspy.context(lm=embedded.task, adapter=embedded.adapter):
        prediction = dspy.Predict(Order)(text="Please send 2 blue mugs and a teapot by express, ordered online.")
    assert isinstance(prediction.quantity, int)
    assert isinstance(prediction.express, bool)
    items = prediction["items"]  # (Prediction.items is the dict method)
    assert isinstance(items, list) and all(isinstance(i, str) for i in items)
    assert prediction.channel in ("web", "phone", "store")
    assert prediction.coupon is None or isinstance(prediction.coupon, str)
