"""The demo search (successive halving over candidate demo sets) with fake evaluators, its budgets, and the
``auto`` optimizer end to end on a scripted LM."""

from collections import Counter
from collections.abc import Sequence

import dspy
import pytest

from ratchet.lm import ScriptedEngine
from ratchet.lm.tokens import PromptBudget
from ratchet.optimize.budget import BudgetExhausted, DeadlineGuard, InstructionCost, affordable_trials, guarded_lm
from ratchet.optimize.demo_fit import demo_capacity
from ratchet.optimize.demo_search import (
    DemoPlan,
    Trial,
    challenge_incumbent,
    draw_demos,
    plan_grid,
    rung_sizes,
    successive_halving,
)


def _examples(n: int, labels: Sequence[str] = ("a", "b", "c")) -> list[dspy.Example]:
    return [dspy.Example(text=f"t{i}", label=labels[i % len(labels)]).with_inputs("text") for i in range(n)]


def _trials(plans: list[DemoPlan], train: list[dspy.Example]) -> list[Trial]:
    return [Trial(plan, draw_demos(train, plan, lambda ex: ex.label)) for plan in plans]


def _scorer(quality: dict[int, float]):
    """Scores by demo-set size: a candidate of size s answers example i right when (i * 7919 % 100) < quality[s]."""
    calls = Counter()

    def score(demos, examples):
        calls["examples"] += len(examples)
        q = quality[len(demos)]
        return [1.0 if (int(ex.text[1:]) * 7919) % 100 < q else 0.0 for ex in examples]

    return score, calls


def test_rungs_narrow_nine_candidates_to_one_on_growing_prefixes() -> None:
    assert rung_sizes(100, 9, eta=3) == [11, 33, 100]
    assert rung_sizes(30, 9, eta=3, first=8) == [8, 10, 30]
    assert rung_sizes(5, 9) == [5]
    assert rung_sizes(0, 9) == []


def test_the_best_candidate_wins_at_a_fraction_of_exhaustive_cost() -> None:
    train, dev = _examples(300), _examples(100)
    plans = plan_grid(40, len(train))
    assert [p.size for p in plans] == [40, 40, 40, 20, 20, 20, 10, 10, 10]
    assert plans[0] == DemoPlan(40, 0, "shuffled", pool=40) and DemoPlan(40, 0, "interleaved", pool=40) in plans
    score, calls = _scorer({40: 80, 20: 60, 10: 40})
    result = successive_halving(_trials(plans, train), dev, score, eta=3)
    assert result.winner.plan.size == 40
    assert calls["examples"] == result.calls < 9 * 100 / 3  # exhaustive search scores 900
    assert result.stopped is None and len(result.winner.scores) == 33  # not completed unless asked
    full = successive_halving(_trials(plans, train), dev, score, eta=3, full=True)
    assert len(full.winner.scores) == 100


def test_a_worse_large_set_loses_to_a_better_small_one() -> None:
    train, dev = _examples(300), _examples(100)
    score, _ = _scorer({40: 30, 20: 70, 10: 50})
    result = successive_halving(_trials(plan_grid(40, 300), train), dev, score)
    assert result.winner.plan.size == 20


def test_ties_go_to_the_earlier_candidate() -> None:
    train, dev = _examples(300), _examples(60)
    score, _ = _scorer({40: 50, 20: 50, 10: 50})
    result = successive_halving(_trials(plan_grid(40, 300), train), dev, score)
    assert result.winner is result.trials[0]


def test_the_deadline_stops_the_search_and_the_last_complete_rung_decides() -> None:
    train, dev = _examples(300), _examples(100)
    score, _ = _scorer({40: 30, 20: 70, 10: 50})
    now = [0.0]

    def clock() -> float:
        return now[0]

    def step(trial: Trial) -> None:
        now[0] += 1.0  # every candidate's rung costs a second

    result = successive_halving(_trials(plan_grid(40, 300), train), dev, score, deadline=10.5, clock=clock,
                                on_step=step)
    assert result.stopped and "rung 2" in result.stopped
    assert result.winner.plan.size == 20  # chosen on the 11 examples every candidate scored
    started_rung_two = [t for t in result.trials if t.rung == 1]
    assert len(started_rung_two) == 2  # 9 in rung one, then the deadline after two more


def test_a_deadline_before_any_score_falls_back_to_the_first_plan() -> None:
    train, dev = _examples(60), _examples(30)
    score, calls = _scorer({20: 10, 10: 90, 5: 90})
    result = successive_halving(_trials(plan_grid(20, 60), train), dev, score, deadline=0.0, clock=lambda: 1.0)
    assert result.winner is result.trials[0] and calls["examples"] == 0


def test_draws_are_balanced_and_the_two_orders_hold_the_same_demos() -> None:
    train = _examples(90, labels=("a", "b", "c", "d", "e"))
    interleaved = draw_demos(train, DemoPlan(20, 0, "interleaved"), lambda ex: ex.label)
    shuffled = draw_demos(train, DemoPlan(20, 0, "shuffled"), lambda ex: ex.label)
    assert Counter(ex.label for ex in interleaved) == dict.fromkeys("abcde", 4)
    assert all(len({ex.label for ex in interleaved[i:i + 5]}) == 5 for i in range(0, 20, 5))  # round-robin
    assert sorted(ex.text for ex in shuffled) == sorted(ex.text for ex in interleaved)
    assert [ex.text for ex in shuffled] != [ex.text for ex in interleaved]
    other = draw_demos(train, DemoPlan(20, 1, "shuffled"), lambda ex: ex.label)
    assert {ex.text for ex in other} != {ex.text for ex in shuffled}


def test_the_sizes_of_one_draw_nest_so_each_smaller_prompt_is_a_prefix() -> None:
    train = _examples(300, labels=tuple("abcdefghij"))
    plans = plan_grid(96, len(train))
    assert {p.pool for p in plans} == {96}
    for order in ("shuffled", "interleaved"):
        for draw in (0, 1):
            big = draw_demos(train, DemoPlan(96, draw, order, pool=96), lambda ex: ex.label)
            assert big == draw_demos(train, DemoPlan(96, draw, order), lambda ex: ex.label)  # the pool's own size
            for size in (48, 24):
                small = draw_demos(train, DemoPlan(size, draw, order, pool=96), lambda ex: ex.label)
                assert [ex.text for ex in small] == [ex.text for ex in big[:size]]
    interleaved = draw_demos(train, DemoPlan(40, 0, "interleaved", pool=96), lambda ex: ex.label)
    assert Counter(ex.label for ex in interleaved) == dict.fromkeys("abcdefghij", 4)  # a round-robin prefix


def test_a_rung_scores_the_candidates_of_one_draw_together_largest_first() -> None:
    train, dev = _examples(300), _examples(8)
    visited: list[str] = []

    def score(demos, examples):
        return [0.5] * len(examples)

    trials = _trials(plan_grid(40, len(train)), train)
    successive_halving(trials, dev, score, on_step=lambda trial: visited.append(trial.plan.label))
    assert visited[:3] == ["40 demos, draw 0, interleaved", "20 demos, draw 0, interleaved",
                           "10 demos, draw 0, interleaved"]
    assert visited[3:6] == ["40 demos, draw 0, shuffled", "20 demos, draw 0, shuffled", "10 demos, draw 0, shuffled"]


def test_an_extraction_draw_covers_every_field_and_the_empty_case() -> None:
    rows = [{"people": "2", "date": None}] * 50 + [{"people": None, "date": "today"}] * 5 + \
        [{"people": None, "date": None}] * 3
    train = [dspy.Example(text=f"t{i}", **row).with_inputs("text") for i, row in enumerate(rows)]

    def filled(ex: dspy.Example) -> str:
        return "+".join(f for f in ("people", "date") if ex.get(f)) or "empty"

    demos = draw_demos(train, DemoPlan(9, 0, "shuffled"), filled)
    assert Counter(filled(ex) for ex in demos) == {"people": 3, "date": 3, "empty": 3}


def test_capacity_is_the_most_demos_under_ninety_percent_of_the_budget() -> None:
    class OneTokenPerWord:
        def format(self, signature, demos, inputs):
            return [{"role": "user", "content": " ".join(["w"] * (10 + 5 * len(demos)))}]

    budget = PromptBudget(lambda messages: len(messages[0]["content"].split()), 200, "words")
    demos = _examples(100)
    assert demo_capacity(OneTokenPerWord(), None, demos, {}, budget, cap=100) == 34  # 10 + 5 * 34 = 180 = 0.9 * 200
    assert demo_capacity(OneTokenPerWord(), None, demos, {}, budget, cap=12) == 12
    assert demo_capacity(OneTokenPerWord(), None, demos, {}, PromptBudget(None, 0, "off"), cap=100) == 40


def test_trials_fit_the_time_left_or_none_run() -> None:
    cost = InstructionCost(seconds_per_example=0.2, dev_size=100, unscored_dev=67, candidates=3)
    assert cost.fixed == pytest.approx((67 + 200) * 0.2 + 45)
    assert cost.per_trial == pytest.approx((35 + 20) * 0.2)
    assert affordable_trials(cost, cost.fixed + 10 * cost.per_trial + 1) == 10
    assert affordable_trials(cost, cost.fixed + 10 * cost.per_trial + 1, cap=4) == 4
    assert affordable_trials(cost, cost.fixed - 1) == 0


def test_the_guard_refuses_calls_after_the_deadline_only_while_armed() -> None:
    now = [0.0]
    guard = DeadlineGuard(5.0, clock=lambda: now[0])
    engine = ScriptedEngine(lambda prompt: "ok")
    lm = guarded_lm(dspy.LM("scripted/guard", engine=engine, cache=False, num_retries=0), guard)
    assert lm("a") == ["ok"]
    guard.armed = True
    assert lm.copy()("b") == ["ok"]
    now[0] = 6.0
    with pytest.raises(BudgetExhausted):
        lm.copy(temperature=0.5)("c")  # optimizers copy LMs: the copy is guarded too
    guard.armed = False
    assert lm("d") == ["ok"]
    assert guard.tripped == 1 and len(engine.prompts) == 3


def _incumbent_and(winner_size: int, train: list[dspy.Example]) -> tuple[Trial, Trial]:
    demos = draw_demos(train, DemoPlan(40, 0, "interleaved"), lambda ex: ex.label)
    incumbent = Trial(DemoPlan(40, 0, "interleaved", name="incumbent"), demos)
    return incumbent, _trials([DemoPlan(winner_size, 1, "shuffled")], train)[0]


def test_a_clearly_better_winner_replaces_the_incumbent_after_both_score_the_whole_dev_split() -> None:
    train, dev = _examples(300), _examples(100)
    score, _ = _scorer({40: 40, 20: 75})
    incumbent, winner = _incumbent_and(20, train)
    winner.scores = score(winner.demos, dev[:13])  # the search saw only a prefix
    verdict = challenge_incumbent(incumbent, winner, dev, score)
    assert verdict.kept and len(incumbent.scores) == len(winner.scores) == 100
    assert verdict.comparison["ci_low"] > 0 and incumbent.plan.label == "incumbent"


def test_a_small_lead_found_on_a_few_examples_keeps_the_incumbent() -> None:
    train, dev = _examples(300), _examples(100)
    score, _ = _scorer({40: 50, 20: 53})
    incumbent, winner = _incumbent_and(20, train)
    verdict = challenge_incumbent(incumbent, winner, dev, score)
    assert not verdict.kept and "the incumbent stays" in verdict.reason


def test_out_of_time_the_incumbent_stays_and_the_incumbent_winning_needs_no_comparison() -> None:
    train, dev = _examples(300), _examples(100)
    score, calls = _scorer({40: 40, 20: 90})
    incumbent, winner = _incumbent_and(20, train)
    late = challenge_incumbent(incumbent, winner, dev, score, deadline=5.0, clock=lambda: 6.0)
    assert not late.kept and "budget ran out" in late.reason and calls["examples"] == 0
    assert not challenge_incumbent(incumbent, incumbent, dev, score).kept and calls["examples"] == 0
