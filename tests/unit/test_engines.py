from pathlib import Path

import dspy
import pytest
from dspy.lm15 import Config, Message, Request

from ratchet.errors import ModelNotAvailableError
from ratchet.lm.adapter import CompletionAdapter
from ratchet.lm.engines import ScriptedEngine, flatten_request, text_response
from ratchet.lm.local_model import bundled_weights, file_sha256, local_weights


def test_a_single_user_message_is_already_a_completion_prompt() -> None:
    request = Request(model="m", messages=(Message.user("Text: hi\nIntent:"),), config=Config())
    assert flatten_request(request) == "Text: hi\nIntent:"


def test_chat_requests_are_flattened_naively() -> None:
    request = Request(model="m", system="You classify.",
                      messages=(Message.user("q1"), Message.assistant("a1"), Message.user("q2")), config=Config())
    assert flatten_request(request) == "You classify.\n\nq1\n\na1\n\nq2\n\n"


def test_text_response_carries_usage() -> None:
    response = text_response("ok", model="m", input_tokens=5, output_tokens=2, finish_reason="length")
    assert response.usage.total_tokens == 7
    assert response.finish_reason == "length"
    assert response.message.parts[0].text == "ok"


def test_scripted_engine_through_dspy_counts_usage(scripted_lm) -> None:
    lm, engine = scripted_lm(lambda prompt: " 42")
    with dspy.context(lm=lm, adapter=CompletionAdapter(), track_usage=True):
        prediction = dspy.Predict("question -> answer")(question="?")
    assert engine.calls == 1
    usage = prediction.get_lm_usage()["scripted/test"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0


def test_scripted_engine_errors() -> None:
    engine = ScriptedEngine(lambda p: "x", error=lambda p: RuntimeError("down") if "fail" in p else None)
    request = Request(model="m", messages=(Message.user("please fail"),), config=Config())
    with pytest.raises(RuntimeError, match="down"):
        engine.complete(request)
    ok = Request(model="m", messages=(Message.user("fine"),), config=Config())
    assert engine.complete(ok).message.parts[0].text == "x"


def test_file_hash_is_stamped_and_refreshed_when_the_file_changes(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"abc")
    first = file_sha256(weights)
    assert first == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert (tmp_path / "model.gguf.sha256.json").is_file()
    weights.write_bytes(b"abcd")
    assert file_sha256(weights) != first


def test_configured_weights_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        local_weights(tmp_path / "missing.gguf")
    other = tmp_path / "tiny.gguf"
    other.write_bytes(b"weights")
    weights = local_weights(other)
    assert weights.model_id.startswith("llamacpp/tiny@sha256:")
    assert weights.sha256[:16] in weights.model_id


def test_bundled_weights_that_cannot_be_written_are_a_clear_error(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A container whose image lacks the assembled weights fails with the fix, not an OSError traceback."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("HOME", str(blocker / "home"))  # ~/.cache cannot be made, as on a read-only root
    with pytest.raises(ModelNotAvailableError, match="when the image is built"):
        bundled_weights()


class _FakeLlama:
    created = 0

    def __init__(self) -> None:
        type(self).created += 1
        self.name = type(self).created


def _engine(monkeypatch, **kwargs):
    from ratchet.lm.engines.llamacpp import LlamaCppEngine

    _FakeLlama.created = 0
    kwargs.setdefault("prompt_cache_bytes", 0)  # the contexts alone (the prompt cache: test_prompt_cache.py)
    engine = LlamaCppEngine("unused.gguf", model_id="fake", **kwargs)
    monkeypatch.setattr(engine, "_new_llama", _FakeLlama)
    return engine


def test_each_prompt_prefix_keeps_its_own_context(monkeypatch) -> None:
    engine = _engine(monkeypatch, cache_slots=2)
    baseline, candidate = "shared instructions\n" + "A" * 200, "shared instructions\n" + "B" * 200
    used = []
    for prompt in [baseline, candidate, baseline + " x", candidate + " y", baseline]:
        with engine._checkout(prompt) as llama:
            used.append(llama.name)
    assert used == [1, 2, 1, 2, 1]
    with engine._checkout("something else entirely") as llama:  # no free slot: reuse the best idle one
        assert llama.name in (1, 2)
    assert _FakeLlama.created == 2


def test_a_warm_up_context_serves_the_second_prefix_and_the_least_recent_is_reused(monkeypatch) -> None:
    engine = _engine(monkeypatch, cache_slots=2)
    engine.warm_up()
    used = []
    for prompt in ["A" * 100, "B" * 100, "A" * 100, "B" * 100, "C" * 100, "B" * 100]:
        with engine._checkout(prompt) as llama:
            used.append(llama.name)
    assert used == [2, 1, 2, 1, 2, 1]  # C takes A's context (least recently used), B keeps its own
    assert _FakeLlama.created == 2


def test_a_short_prompt_does_not_take_a_long_prompts_context(monkeypatch) -> None:
    """Zero-shot baseline vs few-shot candidate: their instructions match, their caches must stay apart."""
    engine = _engine(monkeypatch, cache_slots=2)
    instructions = "Classify the intent.\n\n"
    few_shot = instructions + "".join(f"Text: demo {i}\nIntent: label\n\n" for i in range(40))
    used = []
    for question in ["a", "b", "c", "demo 9 again"]:  # the last shares more with a demo than with "c"
        for prompt in (few_shot + f"Text: {question}\nIntent:", instructions + f"Text: {question}\nIntent:"):
            with engine._checkout(prompt) as llama:
                used.append(llama.name)
    assert used == [1, 2] * 4  # each arm keeps its own context; before, the short one took the long one's
    # The few-shot context is now the least recently used and shares more characters with this question
    # ("Text: demo …") than the zero-shot one does: still not its family, so the zero-shot context serves it.
    with engine._checkout(instructions + "Text: e\nIntent:") as llama:
        used.append(llama.name)
    with engine._checkout(instructions + "Text: demo 7, again\nIntent:") as llama:
        used.append(llama.name)
    assert used[-2:] == [2, 2]


def test_a_failed_call_forgets_the_cached_prompt(monkeypatch) -> None:
    engine = _engine(monkeypatch, cache_slots=1)
    with pytest.raises(RuntimeError), engine._checkout("prompt one") as llama:
        raise RuntimeError("llama.cpp failed")
    assert engine._idle[0].prompt == "" and engine._idle[0].llama is llama


def test_shared_prefix() -> None:
    from ratchet.lm.engines.prompt_cache import shared_prefix

    assert shared_prefix("abcdef", "abcxyz") == 3
    assert shared_prefix("", "abc") == 0
    assert shared_prefix("abc", "abc") == 3
