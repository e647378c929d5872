import pytest

from ratchet.optimize.stats import compare_paired, deploy_decision


def test_identical_programs_give_an_interval_around_zero_and_no_deploy() -> None:
    scores = [1.0, 0.0, 1.0, 1.0, 0.0] * 20
    cmp = compare_paired(scores, scores)
    assert cmp.mean_difference == 0 and cmp.ci_low == 0 and cmp.ci_high == 0
    assert cmp.p_value == 1.0 and cmp.test == "mcnemar-exact" and cmp.ties == 100
    decision = deploy_decision(cmp, 5.0)
    assert not decision["deploy"] and "keep baseline" in decision["reason"]


def test_mcnemar_exact_p_value() -> None:
    # 10 discordant pairs, all won by the candidate: p = 2 * 0.5**10
    baseline = [0.0] * 10 + [1.0] * 40
    candidate = [1.0] * 10 + [1.0] * 40
    cmp = compare_paired(baseline, candidate)
    assert cmp.p_value == pytest.approx(2 * 0.5 ** 10)
    assert (cmp.wins, cmp.losses, cmp.ties) == (10, 0, 40)
    assert cmp.relative_improvement_percent == pytest.approx(25.0)
    decision = deploy_decision(cmp, 5.0)
    assert decision["deploy"] and decision["improvement_rule_met"] and decision["interval_rule_met"]


def test_small_noisy_gain_fails_the_interval_rule() -> None:
    baseline = [1.0, 0.0] * 10
    candidate = [1.0, 0.0] * 9 + [1.0, 1.0]
    decision = deploy_decision(compare_paired(baseline, candidate), 5.0)
    assert not decision["deploy"] and decision["improvement_rule_met"] and not decision["interval_rule_met"]
    assert "significance rule" in decision["reason"]


def test_a_significant_but_small_gain_fails_the_minimum_improvement() -> None:
    baseline = [0.90] * 400
    candidate = [0.91] * 400
    cmp = compare_paired(baseline, candidate)
    assert cmp.test == "sign-flip-permutation" and cmp.ci_low > 0
    decision = deploy_decision(cmp, 5.0)
    assert not decision["deploy"] and "minimum-improvement rule" in decision["reason"]


def test_zero_baseline_and_input_checks() -> None:
    cmp = compare_paired([0.0] * 30, [1.0] * 15 + [0.0] * 15)
    assert cmp.relative_improvement_percent is None
    assert deploy_decision(cmp, 5.0)["deploy"]
    with pytest.raises(ValueError, match="equal lengths"):
        compare_paired([1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="no examples"):
        compare_paired([], [])
