"""The prompt cache: which context and which saved KV cache a call gets (fake llama), and one real-model check."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ratchet.lm.engines import llamacpp
from ratchet.lm.engines.prompt_cache import PromptCache, Snapshot, same_family, serves, shared_prefix

INSTRUCTIONS = {sig: f"Signature {sig}: answer the question the way the examples do.\n\n" for sig in "XYZ"}


def _prompt(sig: str, arm: str, question: str, demos: int = 40) -> str:
    """A few-shot prompt of one signature and arm (arms differ in their demos, not in length)."""
    body = "".join(f"Q: {arm}-demo {i:02d}\nA: label {i % 7}\n\n" for i in range(demos))
    return INSTRUCTIONS[sig] + body + f"Q: {question}\nA:"


class FakeLlama:
    """Holds the text 'in its KV cache'; records whether two threads ever use it at once."""

    created = 0

    def __init__(self) -> None:
        type(self).created += 1
        self.name = type(self).created
        self.holding = ""
        self.busy = False
        self.pruned = False


def _snapshot(llama: FakeLlama, prompt: str) -> Snapshot | None:
    assert llama.holding == prompt  # the save happens before anything replaces what the context holds
    return Snapshot(prompt=prompt, tokens=np.zeros(len(prompt) // 4, dtype=np.intc), state=None, size=len(prompt))


def _restore(llama: FakeLlama, snapshot: Snapshot) -> bool:
    llama.holding = snapshot.prompt
    llama.pruned = True  # as llama.cpp's sliding-window cache once the restored context goes on
    return True


@pytest.fixture
def engine_factory(monkeypatch: pytest.MonkeyPatch):
    FakeLlama.created = 0
    saves: list[str] = []

    def take(llama: FakeLlama, prompt: str) -> Snapshot | None:
        saves.append(prompt)
        return _snapshot(llama, prompt)

    monkeypatch.setattr(llamacpp, "take_snapshot", take)
    monkeypatch.setattr(llamacpp, "restore_snapshot", _restore)
    monkeypatch.setattr(llamacpp, "holds_from_start", lambda llama: not llama.pruned)

    def make(**kwargs) -> llamacpp.LlamaCppEngine:
        engine = llamacpp.LlamaCppEngine("unused.gguf", model_id="fake", **kwargs)
        monkeypatch.setattr(engine, "_new_llama", FakeLlama)
        engine.saves = saves  # type: ignore[attr-defined]
        return engine

    return make


def _call(engine: llamacpp.LlamaCppEngine, prompt: str) -> tuple[int, bool]:
    """One call: (the context's name, whether it held the prompt's family when the call started)."""
    with engine._checkout(prompt) as llama:
        warm = bool(llama.holding) and same_family(shared_prefix(llama.holding, prompt), llama.holding, prompt)
        llama.holding = prompt
        return llama.name, warm


def test_three_signatures_and_two_arms_stay_warm_on_one_context(engine_factory) -> None:
    engine = engine_factory()
    families = [(sig, arm) for sig in "XYZ" for arm in ("base", "cand")]
    warm = []
    for round_ in range(4):
        for sig, arm in families:
            warm.append(_call(engine, _prompt(sig, arm, f"question {round_}"))[1])
    assert FakeLlama.created == 1
    # A family is saved once it has recurred (its second call), when the context moves on: from the third
    # round on every call is warm
    assert warm[:12] == [False] * 12 and all(warm[12:])
    assert len(engine.saves) == 6  # each family saved once
    assert engine.cache_stats["restored"] == 12 and engine._prompts.restores == 12


def test_the_old_behaviour_without_a_prompt_cache_recomputes_every_switch(engine_factory) -> None:
    engine = engine_factory(cache_slots=2, prompt_cache_bytes=0)
    warm = [_call(engine, _prompt(sig, arm, f"q{r}"))[1]
            for r in range(3) for sig in "XYZ" for arm in ("base", "cand")]
    assert not any(warm) and not engine.saves  # 6 families over 2 contexts: each call finds its prefix gone


def test_a_family_on_its_own_context_is_reused_without_a_restore(engine_factory) -> None:
    engine = engine_factory(cache_slots=2)
    a, b = _prompt("X", "base", "one"), _prompt("X", "cand", "one")
    used = [_call(engine, p)[0] for p in (a, b, a + " more", b + " more")]
    assert used == [1, 2, 1, 2] and not engine.saves and engine._prompts.restores == 0


def test_a_short_zero_shot_prompt_never_gets_the_few_shot_snapshot(engine_factory) -> None:
    engine = engine_factory()
    few_shot = _prompt("X", "cand", "q")
    zero_shot = INSTRUCTIONS["X"] + "Q: q\nA:"
    _call(engine, _prompt("X", "cand", "first"))
    _call(engine, few_shot)
    _call(engine, zero_shot)  # the few-shot prompt (its family's second call) is saved as the context moves on
    assert engine.saves == [few_shot]
    assert engine._prompts.find(zero_shot) == (None, 0)
    assert _call(engine, _prompt("X", "cand", "other question")) == (1, True)  # restored, not recomputed


def test_the_budget_drops_the_least_recently_used_snapshot(engine_factory) -> None:
    one = len(_prompt("X", "base", "q0 again"))  # the saved prompts
    engine = engine_factory(prompt_cache_bytes=2 * (one + one // 4 * 4 + one) + 10)  # room for two snapshots
    for sig in "XYZ":
        _call(engine, _prompt(sig, "base", "q0"))
        _call(engine, _prompt(sig, "base", "q0 again"))  # the family recurs: saved when the context moves on
    # X's snapshot is used again (restored) just before Z's is saved: Y's, the least recently used, goes
    assert _call(engine, _prompt("X", "base", "q1")) == (1, True)
    stats = engine._prompts.stats()
    assert stats["snapshots"] == 2 and stats["dropped"] == 1 and stats["bytes"] <= stats["budget_bytes"]
    assert engine._prompts.find(_prompt("Y", "base", "q2"))[0] is None
    assert engine._prompts.find(_prompt("Z", "base", "q2"))[0] is not None
    assert _call(engine, _prompt("Y", "base", "q3")) == (1, False)  # recomputed


def test_the_automatic_budget_is_two_full_contexts_of_kv_cache() -> None:
    cache = PromptCache(None, auto_tokens=2 * 4096)
    snapshot = Snapshot(prompt="p" * 100, tokens=np.zeros(1000, dtype=np.intc), state=None, size=18_432_000)
    assert cache.put(snapshot)
    assert cache.budget_bytes == 18_432 * 8192


def test_room_reserved_for_a_search_holds_more_snapshots_then_shrinks_back() -> None:
    cache = PromptCache(300, auto_tokens=0)  # room for two snapshots of 148 bytes: 10 tokens, 10 bytes a token

    def put(sig: str) -> bool:
        return cache.put(Snapshot(prompt=f"{sig} prompt", tokens=np.zeros(10, dtype=np.intc), state=None, size=100))

    with cache.reserve(20):  # 20 tokens more: 200 bytes, two more snapshots
        assert all(put(sig) for sig in "XYZ") and len(cache) == 3 and cache.dropped == 0
        with cache.reserve(10):  # reservations add up
            assert cache.extra_tokens == 30
        assert len(cache) == 3  # nothing is dropped while the outer reservation holds
    assert len(cache) == 2 and cache.dropped == 1 and cache.bytes <= cache.budget_bytes
    assert cache.find("X prompt")[0] is None and cache.find("Z prompt")[0] is not None  # the least recently used went
    assert cache.extra_tokens == 0


def test_the_engines_room_for_prompts_is_at_most_two_more_contexts(engine_factory) -> None:
    engine = engine_factory(prompt_cache_bytes=1000, n_ctx=512)
    with engine.room_for_prompts(50_000):
        assert engine._prompts.extra_tokens == 1024
    assert engine._prompts.extra_tokens == 0
    off = engine_factory(prompt_cache_bytes=0)
    with off.room_for_prompts(50_000):  # no prompt cache: nothing to reserve
        assert off._prompts is None


def test_one_snapshot_per_family_the_newest_replaces_the_older() -> None:
    cache = PromptCache(10_000_000, auto_tokens=0)
    first, second = _prompt("X", "base", "q1"), _prompt("X", "base", "q2")
    for prompt in (first, second):
        cache.put(Snapshot(prompt=prompt, tokens=np.zeros(10, dtype=np.intc), state=None, size=100))
    assert len(cache) == 1 and cache.find(second + "x")[0].prompt == second


def test_a_shorter_nested_prompt_does_not_replace_the_longer_ones_snapshot() -> None:
    cache = PromptCache(10_000_000, auto_tokens=0)
    long, short = _prompt("X", "base", "q1", demos=96), _prompt("X", "base", "q2", demos=48)
    assert serves(long, short) and not serves(short, long)
    for prompt in (long, short):
        cache.put(Snapshot(prompt=prompt, tokens=np.zeros(10, dtype=np.intc), state=None, size=100))
    assert len(cache) == 2
    assert cache.find(_prompt("X", "base", "q3", demos=96))[0].prompt == long
    assert cache.find(_prompt("X", "base", "q3", demos=48))[0].prompt == short
    assert cache.find(_prompt("X", "base", "q3", demos=60))[0].prompt == long  # nested in it: restored, cut back


def test_candidates_nested_in_one_another_each_keep_their_snapshot(engine_factory) -> None:
    """A demo search's rung: 96, 48 and 24 demos of one draw in turn on one context, then the 96 again."""
    engine = engine_factory()
    for demos in (96, 48, 24):
        for question in ("q1", "q2"):
            _call(engine, _prompt("X", "base", question, demos=demos))
    # The 96 is saved as the 48 cuts the context back; the 48 needs no snapshot of its own: the 96's serves it
    assert engine.saves == [_prompt("X", "base", "q2", demos=96)]
    assert _call(engine, _prompt("X", "base", "q3", demos=96)) == (1, True)  # restored, not read again
    # the 24 shares too little of the 96 to be its family: saved when the 96 took the context back
    assert engine.saves[1:] == [_prompt("X", "base", "q2", demos=24)]
    _call(engine, _prompt("X", "Y", "other family"))
    assert _call(engine, _prompt("X", "base", "q4", demos=48)) == (1, True)  # the 96's, restored and cut back
    assert engine._prompts.restores == 2 and engine._prompts.find(_prompt("X", "base", "q5", demos=48))[0].prompt \
        == _prompt("X", "base", "q2", demos=96)


def test_a_context_that_cannot_be_cut_back_restores_the_short_prompts_snapshot(engine_factory) -> None:
    """A zero-shot baseline and a few-shot candidate in turns on one context: once the context has restored the
    candidate's snapshot, its sliding-window cells no longer reach back to the shared instructions, so the
    baseline gets its own snapshot back instead of being read again."""
    engine = engine_factory()
    zero_shot = [INSTRUCTIONS["X"] + f"Q: {q}\nA:" for q in ("alpha", "beta", "gamma", "delta")]
    _call(engine, zero_shot[0]), _call(engine, zero_shot[1])
    _call(engine, _prompt("X", "cand", "alpha")), _call(engine, _prompt("X", "cand", "beta"))
    assert _call(engine, zero_shot[2]) == (1, False)  # a freshly read context: its instructions are reused
    assert _call(engine, _prompt("X", "cand", "gamma")) == (1, True)  # restored
    assert _call(engine, zero_shot[3]) == (1, True)  # restored too: the context could not be cut back
    assert engine._prompts.restores == 2


def test_a_prompt_that_does_not_recur_is_not_saved(engine_factory) -> None:
    """One program, zero-shot, long unique inputs: no copy and no memory spent on prompts never seen again."""
    engine = engine_factory()
    for i in range(5):
        _call(engine, INSTRUCTIONS["X"] + f"Q: a long document number {i} " + "word " * 200 + "\nA:")
    assert not engine.saves and len(engine._prompts) == 0


def test_a_failed_save_does_not_fail_the_call(engine_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_factory()

    def broken(llama, prompt):
        raise RuntimeError("llama_state_seq_get_data failed")

    monkeypatch.setattr(llamacpp, "take_snapshot", broken)
    _call(engine, _prompt("X", "base", "q"))
    _call(engine, _prompt("X", "base", "q2"))
    assert _call(engine, _prompt("Y", "base", "q")) == (1, False)
    assert len(engine._prompts) == 0


def test_contexts_are_never_shared_between_threads(engine_factory) -> None:
    engine = engine_factory(pool_size=2)
    clashes: list[int] = []

    def worker(sig: str, arm: str) -> None:
        for i in range(30):
            with engine._checkout(_prompt(sig, arm, f"q{i}")) as llama:
                if llama.busy:
                    clashes.append(llama.name)
                llama.busy = True
                llama.holding = _prompt(sig, arm, f"q{i}")
                time.sleep(0.0005)
                llama.busy = False

    threads = [threading.Thread(target=worker, args=(sig, arm)) for sig in "XYZ" for arm in ("base", "cand")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not clashes and FakeLlama.created == 2
    assert engine.cache_stats["missed"] <= 6 + 2  # each family computed cold about once, not on every switch


@pytest.mark.slow
def test_a_restored_prompt_answers_exactly_as_it_did_when_computed() -> None:
    """Real model: X, Y three times on one context; the third X and Y are restored and answer the same."""
    pytest.importorskip("llama_cpp")
    from dspy.lm15 import Config, Message, Request

    from ratchet.lm.local_model import local_weights

    weights = local_weights(None)
    prompts = [_prompt(sig, "base", "demo 3", demos=6) for sig in "XY"]  # ~90 tokens each
    engine = llamacpp.LlamaCppEngine(weights.path, model_id="m", n_ctx=512, n_threads=1, self_test=False)
    try:
        answers = []
        for prompt in prompts * 3:  # saved after their second call, restored on their third
            request = Request(model="m", messages=(Message.user(prompt),), config=Config(max_tokens=4, temperature=0.0))
            answers.append(engine.complete(request).message.parts[0].text)
        assert answers[4:] == answers[:2] == answers[2:4] and answers[0]
        assert engine.cache_stats == {"reused": 0, "restored": 2, "missed": 4}
        assert engine._prompts.stats()["saves"] == 2 and engine._prompts.restores == 2  # each family saved once
    finally:
        engine.close()


def _fresh_scores(llama, prompt: str, options: list[list[int]]) -> np.ndarray:
    from ratchet.lm.engines.choices import score_choices

    llama._ctx.kv_cache_seq_rm(-1, 0, -1)
    llama.n_tokens = 0
    return np.array(score_choices(llama, llama.tokenize(prompt.encode(), add_bos=True, special=True), options))


@pytest.mark.slow
def test_a_restored_long_prompt_serves_any_shorter_prefix_as_if_computed_fresh() -> None:
    """Real model: Gemma 3's sliding-window layers see 512 tokens; a ~1,000-token snapshot, restored, is then reused
    up to where the next question starts (same family) and up to its instructions only (another family). Both
    score the labels as a context that never held it does: a sequence-only snapshot lacked the early cells of the
    sliding-window layers, and those calls were up to 9 nats off."""
    pytest.importorskip("llama_cpp")
    from ratchet.lm.engines.choices import score_choices
    from ratchet.lm.engines.prompt_cache import restore_snapshot, take_snapshot
    from ratchet.lm.local_model import local_weights

    weights = local_weights(None)
    long_prompt = _prompt("X", "base", "my card has not arrived", demos=60)
    same_family_prompt = _prompt("X", "base", "what is the exchange rate", demos=60)
    short_prompt = INSTRUCTIONS["X"] + "Q: my pin is blocked\nA:"
    engine = llamacpp.LlamaCppEngine(weights.path, model_id="m", n_ctx=2048, n_threads=1, self_test=False)
    try:
        with engine._checkout() as llama:
            options = [llama.tokenize(f" label {i}".encode(), add_bos=False, special=False) for i in range(7)]
            assert len(llama.tokenize(long_prompt.encode(), add_bos=True, special=True)) > 800
            for prompt in (same_family_prompt, short_prompt):
                expected = _fresh_scores(llama, prompt, options)
                _fresh_scores(llama, long_prompt, options)
                snapshot = take_snapshot(llama, long_prompt)
                _fresh_scores(llama, "Something else entirely. " * 30, options)
                assert snapshot is not None and restore_snapshot(llama, snapshot)
                tokens = llama.tokenize(prompt.encode(), add_bos=True, special=True)
                assert np.allclose(score_choices(llama, tokens, options), expected, atol=0.05)
    finally:
        engine.close()


@pytest.mark.slow
def test_a_state_missing_sliding_window_cells_is_never_reused_before_its_end() -> None:
    """Real model: restore a sequence-only state (what llama.cpp's seq API writes: the sliding-window layers keep
    only the last 512 positions). Reusing it up to an earlier token would attend to nothing there; the guard sees
    the missing cells and evaluates the prompt from the start instead."""
    pytest.importorskip("llama_cpp")
    import ctypes

    import llama_cpp

    from ratchet.lm.engines.choices import score_choices
    from ratchet.lm.engines.prompt_cache import reusable_prefix
    from ratchet.lm.local_model import local_weights

    weights = local_weights(None)
    long_prompt = _prompt("Y", "base", "my card has not arrived", demos=60)
    short_prompt = INSTRUCTIONS["Y"] + "Q: my pin is blocked\nA:"
    engine = llamacpp.LlamaCppEngine(weights.path, model_id="m", n_ctx=2048, n_threads=1, self_test=False)
    try:
        with engine._checkout() as llama:
            options = [llama.tokenize(f" label {i}".encode(), add_bos=False, special=False) for i in range(7)]
            expected = _fresh_scores(llama, short_prompt, options)
            _fresh_scores(llama, long_prompt, options)
            held = list(llama.input_ids[: llama.n_tokens])
            size = llama_cpp.llama_state_seq_get_size(llama.ctx, 0)
            state = (ctypes.c_uint8 * size)()
            written = llama_cpp.llama_state_seq_get_data(llama.ctx, state, size, 0)
            llama._ctx.kv_cache_seq_rm(-1, 0, -1)
            assert llama_cpp.llama_state_seq_set_data(llama.ctx, state, written, 0)
            llama.input_ids[: len(held)] = held
            llama.n_tokens = len(held)
            assert reusable_prefix(llama, 20) == 0 and reusable_prefix(llama, len(held)) == len(held)
            tokens = llama.tokenize(short_prompt.encode(), add_bos=True, special=True)
            assert np.allclose(score_choices(llama, tokens, options), expected, atol=0.05)
    finally:
        engine.close()


def test_the_setting_bounds_the_engines_prompt_cache() -> None:
    from ratchet.config.settings import LocalModelSettings
    from ratchet.lm.setup import local_engine

    assert local_engine(LocalModelSettings(prompt_cache_mb=0, self_test=False))._prompts is None
    assert local_engine(LocalModelSettings(prompt_cache_mb=50, self_test=False))._prompts.budget_bytes == 50_000_000
    automatic = local_engine(LocalModelSettings(n_ctx=1024, self_test=False))._prompts
    assert automatic.budget_bytes is None and automatic.auto_tokens == 2048  # sized by the first snapshot
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        LocalModelSettings(prompt_cache_mb=-1)

