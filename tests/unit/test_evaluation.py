from typing import Literal

import dspy

from ratchet.evaluation import attach_demos, evaluate_program
from ratchet.lm.adapter import CompletionAdapter


class Classify(dspy.Signature):
    text: str = dspy.InputField()
    label: Literal["yes", "no"] = dspy.OutputField()


def metric(example, prediction, trace=None):
    return prediction.label == example.label


def test_evaluate_keeps_the_failure_kind_of_each_example(scripted_lm) -> None:
    def respond(prompt: str) -> str:
        last = prompt.rsplit("Text:", 1)[-1]
        if "crash" in last:
            raise RuntimeError("engine down")
        if "garble" in last:
            return " ???"
        return " yes"

    lm, _ = scripted_lm(respond)
    examples = [dspy.Example(text=t, label=lbl).with_inputs("text")
                for t, lbl in [("a", "yes"), ("b", "no"), ("garble", "yes"), ("crash", "yes")]]
    seen = []
    for threads in (1, 3):
        report = evaluate_program(dspy.Predict(Classify), examples, metric, lm=lm, adapter=CompletionAdapter(),
                                  num_threads=threads, on_result=seen.append)
        assert report.n == 4
        assert report.score == 0.25
        assert report.parse_failures == 1
        assert report.errors == 1
        assert [r.index for r in report.results] == [0, 1, 2, 3]
        assert report.results[0].tokens > 0
        assert report.results[2].parse_failure and report.results[2].error == "AdapterParseError"
        assert report.summary()["parse_failure_rate"] == 0.25
    assert len(seen) == 8


def test_attach_demos_sets_every_predictor() -> None:
    module = dspy.ChainOfThought(Classify)
    demos = [dspy.Example(text="x", label="yes")]
    attach_demos(module, demos)
    assert all(p.demos == demos for p in module.predictors())
