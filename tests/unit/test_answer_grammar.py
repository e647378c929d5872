"""The answer grammar: one rule per output type, parsed by llama.cpp, accepting what the parser reads back."""

from typing import Literal

import dspy
import pytest

from ratchet.lm.adapter import CompletionAdapter
from ratchet.lm.answer_grammar import answer_grammar, gbnf_literal, structured_output


class Contact(dspy.Signature):
    """Copy the contact details."""

    message: str = dspy.InputField()
    first_name: str | None = dspy.OutputField()
    phone: str | None = dspy.OutputField(desc="a phone number")


class Typed(dspy.Signature):
    """Read the order."""

    text: str = dspy.InputField()
    count: int = dspy.OutputField()
    ratio: float | None = dspy.OutputField()
    paid: bool = dspy.OutputField()
    items: list[str] = dspy.OutputField()
    sizes: list[int] | None = dspy.OutputField()
    channel: Literal["web", "phone call"] = dspy.OutputField()
    flags: list[Literal["gift", "rush"]] = dspy.OutputField()
    note: str | None = dspy.OutputField()
    extra: dict = dspy.OutputField()


class Answer(dspy.Signature):
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


class Count(dspy.Signature):
    question: str = dspy.InputField()
    count: int | None = dspy.OutputField()


def rules(signature: type[dspy.Signature], **kwargs) -> dict[str, str]:
    lines = answer_grammar(signature, **kwargs).strip().splitlines()
    return dict(line.split(" ::= ", 1) for line in lines)


def test_each_field_on_its_labelled_line_in_order() -> None:
    grammar = rules(Contact, line_chars=40)
    assert grammar["root"] == '" "? v0 "\\n" "Phone:" " " v1'
    assert grammar["v0"] == grammar["v1"] == '"none" | [^\\n]{1,40}'


def test_a_rule_for_each_type() -> None:
    grammar = rules(Typed)
    assert grammar["root"].split(" v0 ")[1].startswith('"\\n" "Ratio:" " " v1')
    assert '"\\n" "Note:" " " v7' in grammar["root"]
    assert grammar["v0"] == "int"
    assert grammar["v1"] == '"none" | num'
    assert grammar["v2"] == "bool"
    assert grammar["v3"] == '"[" (jstr ("," " "? jstr){0,63})? "]"'
    assert grammar["v4"] == '"none" | "[" (int ("," " "? int){0,63})? "]"'
    assert grammar["v5"] == '"web" | "phone call"'
    assert grammar["v6"] == '"[" (("\\"gift\\"" | "\\"rush\\"") ("," " "? ("\\"gift\\"" | "\\"rush\\"")){0,63})? "]"'
    assert grammar["v7"] == '"none" | [^\\n]{1,200}'
    assert grammar["v8"] == "[^\\n]{1,200}"  # other types: one line, read back by DSPy's parser
    assert grammar["int"] == '"-"? [0-9]{1,18}'
    assert grammar["bool"] == '"true" | "false"'


def test_literals_are_escaped() -> None:
    assert gbnf_literal('say "hi"\\\n') == '"say \\"hi\\"\\\\\\n"'


def test_which_answers_are_constrained() -> None:
    assert structured_output(Contact) and structured_output(Typed) and structured_output(Count)
    assert not structured_output(Answer)  # one free-text answer: nothing to keep in shape


@pytest.mark.parametrize("signature", [Contact, Typed, Count])
def test_llama_cpp_parses_the_grammar(signature) -> None:
    pytest.importorskip("llama_cpp")
    from ratchet.lm.engines.grammar import grammar_problem

    assert grammar_problem(answer_grammar(signature)) is None


def test_llama_cpp_reports_a_bad_grammar() -> None:
    pytest.importorskip("llama_cpp")
    from ratchet.lm.engines.grammar import grammar_problem

    assert "Undefined rule" in grammar_problem('root ::= "a" | missing')
    assert grammar_problem("  ") == "the grammar is empty"


def test_what_the_grammar_admits_the_parser_reads_back() -> None:
    completion = (' 3\nRatio: none\nPaid: true\nItems: ["tea", "cake \\"x\\""]\nSizes: [1, 2]\nChannel: phone call\n'
                  'Flags: ["rush"]\nNote: none\nExtra: {"a": 1}')
    assert CompletionAdapter().parse(Typed, completion) == {
        "count": 3, "ratio": None, "paid": True, "items": ["tea", 'cake "x"'], "sizes": [1, 2],
        "channel": "phone call", "flags": ["rush"], "note": None, "extra": {"a": 1}}
