"""``classify_commit``: the Conventional Commits type of a commit, from its subject line.

Its training data is mined from git history (``ratchet collect git``): a subject like
``fix(parser): handle empty input`` becomes the example ``handle empty input`` → ``fix``.
"""

from __future__ import annotations

from typing import Literal

import dspy

from ratchet.programs.registry import program

CommitType = Literal["feat", "fix", "docs", "style", "refactor", "perf", "test", "build", "ci", "chore", "revert"]


class ClassifyCommit(dspy.Signature):
    """Classify the change a commit message describes into its Conventional Commits type."""

    subject: str = dspy.InputField(desc="the commit subject without its type prefix")
    type: CommitType = dspy.OutputField()


def type_match(example: dspy.Example, prediction: dspy.Prediction, trace: object = None) -> bool:
    """1 when the predicted commit type is the labelled one."""
    return prediction.get("type") == example.type


@program("classify_commit", metric=type_match, label_field="type")
def classify_commit() -> dspy.Module:
    return dspy.Predict(ClassifyCommit)
