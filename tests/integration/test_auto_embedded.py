"""The ``auto`` optimizer on the real embedded model, small: demo sets sized by the model's own tokenizer."""

from __future__ import annotations

from dataclasses import replace

import dspy
import pytest

from ratchet.config import Settings
from ratchet.data.files import load_examples
from ratchet.data.sampling import seeded_sample
from ratchet.lm.tokens import prompt_budget
from ratchet.optimize.optimizers import OptimizeContext, get_optimizer
from ratchet.optimize.run import role_lms
from ratchet.programs import load_programs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_auto_fits_demo_sets_to_a_small_context_and_keeps_the_best(embedded) -> None:
    spec = load_programs(Settings()).get("classify_intent")
    pool = seeded_sample(load_examples(spec.data["train"], spec.schema).examples, 76, 0)
    roles = role_lms(embedded, base_model=True)
    budget = replace(prompt_budget(embedded), limit=700)  # a small context: the tokenizer decides the size
    ctx = OptimizeContext(spec=spec, trainset=pool[:60], valset=pool[60:], task_lm=roles["task"],
                          prompt_lm=roles["prompt"], teacher_lm=roles["teacher"], reflection_lm=roles["reflection"],
                          base_model=True, adapter=embedded.adapter, prompt_budget=budget)
    plugin = get_optimizer("auto")
    with dspy.context(lm=roles["task"], adapter=embedded.adapter):
        program = plugin.compile(spec.build(), ctx)
    search = plugin.parameters(ctx)["demo_search"]
    fit = search["max_demos_that_fit"]
    assert 4 <= fit < 40
    assert all(c["prompt_tokens"] <= 0.9 * 700 for c in search["candidates"])
    assert len(program.predictors()[0].demos) <= fit
    incumbent = search["candidates"][0]
    assert incumbent["candidate"].startswith("incumbent: LabeledFewShot's")
    challenge = search["incumbent_challenge"]
    if search["search_winner"] != incumbent["candidate"]:  # both were scored on the whole dev split
        scored = {c["candidate"]: c for c in search["candidates"]}
        assert scored[search["search_winner"]]["dev_examples"] == incumbent["dev_examples"] == len(ctx.valset)
    replaced = challenge["winner_replaces_incumbent"]
    assert search["winner"] == (search["search_winner"] if replaced else incumbent["candidate"])
    assert plugin.parameters(ctx)["instruction_search"]["status"] == "skipped"
