from typing import Literal

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

from ratchet.errors import OutputParseError
from ratchet.lm.adapter import CompletionAdapter, answer_grammar, single_choice_field
from ratchet.lm.directives import choices_directive, grammar_directive, read_directive


class Classify(dspy.Signature):
    """Classify the message."""

    text: str = dspy.InputField()
    intent: Literal["card_arrival", "pin_blocked"] = dspy.OutputField()


class Booking(dspy.Signature):
    """Copy the booking details."""

    text: str = dspy.InputField()
    people: str | None = dspy.OutputField(desc="how many people")
    first_name: str | None = dspy.OutputField()


class Typed(dspy.Signature):
    question: str = dspy.InputField()
    count: int = dspy.OutputField()
    ratio: float = dspy.OutputField()
    ok: bool = dspy.OutputField()
    tags: list[str] = dspy.OutputField()


ADAPTER = CompletionAdapter()


class Recording:
    """An engine wrapper that shows each request to ``see`` before answering."""

    def __init__(self, inner, see):
        self.inner = inner
        self.see = see

    def complete(self, request):
        self.see(request)
        return self.inner.complete(request)


def test_prompt_is_instructions_guide_demos_then_the_open_answer() -> None:
    demos = [{"text": "Where is my card?", "intent": "card_arrival"},
             {"text": "PIN\n\n locked", "intent": "pin_blocked"}]
    prompt = ADAPTER.render(Classify, demos, {"text": "My card has not come"})
    assert prompt == (
        "Classify the message.\n"
        "- Intent: one of card_arrival, pin_blocked\n"
        "\n"
        "Text: Where is my card?\n"
        "Intent: card_arrival\n"
        "\n"
        "Text: PIN\n locked\n"
        "Intent: pin_blocked\n"
        "\n"
        "Text: My card has not come\n"
        "Intent:"
    )
    messages = ADAPTER.format(Classify, demos, {"text": "x"})
    assert messages == [{"role": "user", "content": ADAPTER.render(Classify, demos, {"text": "x"})}]


def test_none_values_and_field_descriptions() -> None:
    prompt = ADAPTER.render(Booking, [{"text": "for 2", "people": "2", "first_name": None}], {"text": "hi"})
    assert "- People: how many people; none if absent" in prompt
    assert "- First Name: none if absent" in prompt
    assert "Text: for 2\nPeople: 2\nFirst Name: none" in prompt
    assert prompt.endswith("Text: hi\nPeople:")


def test_demos_missing_inputs_or_all_outputs_are_left_out() -> None:
    prompt = ADAPTER.render(Classify, [{"intent": "pin_blocked"}, {"text": "no label"}], {"text": "hi"})
    assert prompt.count("Text:") == 1


def test_stop_sequences_end_the_example() -> None:
    assert ADAPTER.stop_sequences(Classify) == ["\n\n", "\nText:", "\n"]
    assert ADAPTER.stop_sequences(Booking) == ["\n\n", "\nText:"]


def test_parse_literal_with_loose_spelling() -> None:
    assert ADAPTER.parse(Classify, " card_arrival") == {"intent": "card_arrival"}
    assert ADAPTER.parse(Classify, " Card Arrival.") == {"intent": "card_arrival"}
    assert ADAPTER.parse(Classify, "Intent: pin-blocked\n") == {"intent": "pin_blocked"}


def test_parse_stops_at_a_new_example() -> None:
    assert ADAPTER.parse(Classify, " pin_blocked\nText: another\nIntent: card_arrival") == {"intent": "pin_blocked"}


def test_unknown_choice_is_a_parse_error() -> None:
    with pytest.raises(OutputParseError, match="output field 'intent'") as err:
        ADAPTER.parse(Classify, " tracking_number")
    assert isinstance(err.value, AdapterParseError)
    assert err.value.lm_response == " tracking_number"


def test_multi_field_parse_with_optional_none() -> None:
    assert ADAPTER.parse(Booking, " 4 people\nFirst Name: none") == {"people": "4 people", "first_name": None}
    assert ADAPTER.parse(Booking, " none\nfirst_name: Maria") == {"people": None, "first_name": "Maria"}
    # an optional field the model never wrote is None, not an error
    assert ADAPTER.parse(Booking, " 3") == {"people": "3", "first_name": None}


def test_missing_required_field_is_a_parse_error() -> None:
    with pytest.raises(OutputParseError, match="no value for output field 'ratio'"):
        ADAPTER.parse(Typed, " 3\nOk: true\nTags: a, b")


def test_typed_values() -> None:
    completion = " 1,024 items\nRatio: about 0.75\nOk: Yes\nTags: [\"x\", \"y\"]"
    assert ADAPTER.parse(Typed, completion) == {"count": 1024, "ratio": 0.75, "ok": True, "tags": ["x", "y"]}
    assert ADAPTER.parse(Typed, " 2\nRatio: 1\nOk: false\nTags: a, b ,c")["tags"] == ["a", "b", "c"]
    assert ADAPTER.parse(Typed, " 2\nRatio: 1\nOk: no\nTags:\n- one\n- two")["tags"] == ["one", "two"]
    with pytest.raises(OutputParseError, match="'count'"):
        ADAPTER.parse(Typed, " many\nRatio: 1\nOk: no\nTags: a")
    with pytest.raises(OutputParseError, match="'ok'"):
        ADAPTER.parse(Typed, " 1\nRatio: 1\nOk: maybe\nTags: a")


def test_grammar_describes_the_answer_shape() -> None:
    grammar = answer_grammar(Classify)
    assert grammar.startswith('root ::= " "? v0\n')
    assert 'v0 ::= "card_arrival" | "pin_blocked"' in grammar
    booking = answer_grammar(Booking)
    assert '"\\n" "First Name:" " " v1' in booking
    assert read_directive(grammar_directive(grammar)) == ("gbnf", {"grammar": grammar})
    flattened = {"type": "json_schema", "name": "ratchet_gbnf", "schema": {"x-ratchet": {"grammar": grammar}}}
    assert read_directive(flattened) == ("gbnf", {"grammar": grammar})  # as DSPy canonicalises it
    assert read_directive({"type": "json_object"}) is None
    assert read_directive(choices_directive(["a", "b"], "prompt")) == (
        "choices", {"choices": ["a", "b"], "calibration_prompt": "prompt"})


def test_predict_round_trip_through_a_real_lm(scripted_lm) -> None:
    lm, engine = scripted_lm({"Where": " card_arrival", "PIN": " pin_blocked"})
    predict = dspy.Predict(Classify)
    with dspy.context(lm=lm, adapter=ADAPTER):
        assert predict(text="Where is it?").intent == "card_arrival"
        assert predict(text="PIN is locked").intent == "pin_blocked"
    assert engine.prompts[0].endswith("Text: Where is it?\nIntent:")


def test_chain_of_thought_reasoning_flows_through(scripted_lm) -> None:
    lm, engine = scripted_lm(lambda prompt: " The card is late.\nIntent: card_arrival")
    cot = dspy.ChainOfThought(Classify)
    with dspy.context(lm=lm, adapter=ADAPTER):
        prediction = cot(text="Still no card")
    assert prediction.reasoning == "The card is late."
    assert prediction.intent == "card_arrival"
    assert engine.prompts[0].endswith("Text: Still no card\nReasoning:")


def test_async_call(scripted_lm) -> None:
    import asyncio

    lm, _ = scripted_lm(lambda prompt: " pin_blocked")

    async def run() -> str:
        with dspy.context(lm=lm, adapter=ADAPTER):
            return (await dspy.Predict(Classify).acall(text="pin")).intent

    assert asyncio.run(run()) == "pin_blocked"


def test_unparsable_output_raises_without_constraint(scripted_lm) -> None:
    lm, engine = scripted_lm(lambda prompt: " no idea")
    with dspy.context(lm=lm, adapter=ADAPTER), pytest.raises(AdapterParseError):
        dspy.Predict(Classify)(text="x")
    assert engine.calls == 1


class GrammarEngine(Recording):
    supports_grammar = True


def test_structured_answers_are_constrained_from_the_first_call_on_grammar_engines(scripted_lm) -> None:
    seen = []
    _, engine = scripted_lm(lambda prompt: " 2\nFirst Name: none" if "People:" in prompt else " fine")
    grammar_lm = dspy.LM("scripted/x", engine=GrammarEngine(engine, lambda r: seen.append(
        read_directive(r.config.response_format))), cache=False, num_retries=0)
    plain_lm = dspy.LM("scripted/y", engine=Recording(engine, lambda r: seen.append(
        read_directive(r.config.response_format))), cache=False, num_retries=0)
    with dspy.context(lm=grammar_lm, adapter=CompletionAdapter(constrain=True)):
        assert dspy.Predict(Booking)(text="for 2").people == "2"
        assert dspy.Predict("question -> answer")(question="how?").answer == "fine"  # free text: no grammar
    assert seen == [("gbnf", {"grammar": answer_grammar(Booking)}), None]
    seen.clear()
    with dspy.context(lm=plain_lm, adapter=CompletionAdapter(constrain=True)):  # e.g. a LiteLLM model
        dspy.Predict(Booking)(text="for 2")
    with dspy.context(lm=grammar_lm, adapter=CompletionAdapter(constrain=False)):
        dspy.Predict(Booking)(text="for 2")
    assert seen == [None, None]


def test_an_unparsable_answer_is_a_parse_error_even_when_constrained(scripted_lm) -> None:
    _, engine = scripted_lm(lambda prompt: " many")
    lm = dspy.LM("scripted/x", engine=GrammarEngine(engine, lambda r: None), cache=False, num_retries=0)
    with dspy.context(lm=lm, adapter=CompletionAdapter(constrain=True)), pytest.raises(AdapterParseError):
        dspy.Predict(Typed)(question="x")
    assert engine.calls == 1  # the grammar was there from the start: asking again would give the same answer


def test_evaluate_and_optimizers_use_the_adapter(scripted_lm) -> None:
    answers = {"late": " card_arrival", "locked": " pin_blocked"}
    lm, engine = scripted_lm(answers)
    trainset = [
        dspy.Example(text=f"card is late {i}", intent="card_arrival").with_inputs("text") for i in range(4)
    ] + [dspy.Example(text=f"pin locked {i}", intent="pin_blocked").with_inputs("text") for i in range(4)]

    def metric(example, prediction, trace=None):
        return prediction.intent == example.intent

    with dspy.context(lm=lm, adapter=ADAPTER):
        result = dspy.Evaluate(devset=trainset, metric=metric, num_threads=2)(dspy.Predict(Classify))
        assert result.score == 100.0

        labeled = dspy.LabeledFewShot(k=3).compile(dspy.Predict(Classify), trainset=trainset)
        assert len(labeled.demos) == 3
        engine.prompts.clear()
        labeled(text="card is late again")
        assert engine.prompts[-1].count("Text:") == 4  # three demos and the question

        booted = dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
            dspy.Predict(Classify), trainset=trainset)
        assert any(demo.get("augmented") for demo in booted.demos)
        booted.signature = booted.signature.with_instructions("Pick the intent.")
        booted(text="pin locked again")
        assert engine.prompts[-1].startswith("Pick the intent.")


def test_one_line_answers_cap_max_tokens(scripted_lm) -> None:
    seen = []

    _, engine = scripted_lm(iter([" pin_blocked", " 2\nFirst Name: none"]))
    record = Recording(engine, lambda r: seen.append((r.config.max_tokens, r.config.stop)))
    lm = dspy.LM("scripted/x", engine=record, cache=False, num_retries=0, max_tokens=256)
    with dspy.context(lm=lm, adapter=ADAPTER):
        dspy.Predict(Classify)(text="x")
        dspy.Predict(Booking)(text="x")
    assert seen[0] == (len("card_arrival") + 8, ("\n\n", "\nText:", "\n"))
    assert seen[1] == (256, ("\n\n", "\nText:"))


def test_single_choice_signatures_are_scored_not_generated(scripted_lm) -> None:
    assert single_choice_field(Classify) == ["card_arrival", "pin_blocked"]
    assert single_choice_field(Booking) is None
    seen = []
    _, engine = scripted_lm(lambda prompt: " pin_blocked")
    recording = Recording(engine, lambda r: seen.append((read_directive(r.config.response_format),
                                                         r.config.max_tokens)))
    lm = dspy.LM("scripted/x", engine=recording, cache=False, num_retries=0)
    demos = [dspy.Example(text="Where is it?", intent="card_arrival")]
    predict = dspy.Predict(Classify)
    predict.demos = demos
    with dspy.context(lm=lm, adapter=CompletionAdapter(choice_scoring="calibrated")):
        assert predict(text="PIN locked").intent == "pin_blocked"
    (kind, payload), max_tokens = seen[0]
    assert kind == "choices" and payload["choices"] == ["card_arrival", "pin_blocked"] and max_tokens == 1
    assert payload["calibration_prompt"].endswith("Text: N/A\nIntent:")
    assert "Text: Where is it?\nIntent: card_arrival" in payload["calibration_prompt"]  # same demos
    with dspy.context(lm=lm, adapter=CompletionAdapter(choice_scoring="likelihood")):
        predict(text="x")
    assert seen[1][0][1]["calibration_prompt"] is None
    with pytest.raises(ValueError, match="choice_scoring"):
        CompletionAdapter(choice_scoring="magic")


def test_zero_shot_under_the_grammar_shows_the_answer_form_once(scripted_lm) -> None:
    _, engine = scripted_lm(lambda prompt: " 2\nFirst Name: none")
    lm = dspy.LM("scripted/x", engine=GrammarEngine(engine, lambda r: None), cache=False, num_retries=0)
    with dspy.context(lm=lm, adapter=CompletionAdapter(constrain=True)):
        assert dspy.Predict(Booking)(text="for 2").people == "2"
    assert engine.prompts[-1] == (
        "Copy the booking details.\n"
        "Write none for a field the text does not give.\n"
        "\n"
        "Text: N/A\n"
        "People: none\n"
        "First Name: none\n"
        "\n"
        "Text: for 2\n"
        "People:"
    )
    with_demos = dspy.Predict(Booking)
    with_demos.demos = [dspy.Example(text="for 4", people="4", first_name=None)]
    with dspy.context(lm=lm, adapter=CompletionAdapter(constrain=True)):
        with_demos(text="for 2")
    assert "N/A" not in engine.prompts[-1] and "- People: how many people; none if absent" in engine.prompts[-1]
    assert CompletionAdapter().format_example(Typed) is None  # required outputs have no "none" to show
    with dspy.context(lm=lm, adapter=CompletionAdapter(constrain=False)):
        dspy.Predict(Booking)(text="for 2")
    assert "N/A" not in engine.prompts[-1]


def test_with_demos_the_grammar_is_the_retry_after_a_parse_failure(scripted_lm) -> None:
    seen = []
    _, engine = scripted_lm(iter([" many", " 3\nRatio: 0.5\nOk: true\nTags: a"]))
    lm = dspy.LM("scripted/x", engine=GrammarEngine(engine, lambda r: seen.append(
        read_directive(r.config.response_format))), cache=False, num_retries=0)
    predict = dspy.Predict(Typed)
    predict.demos = [dspy.Example(question="q", count=1, ratio=1.0, ok=False, tags=["x"])]
    with dspy.context(lm=lm, adapter=CompletionAdapter(constrain=True)):
        assert predict(question="x").count == 3
    assert seen == [None, ("gbnf", {"grammar": answer_grammar(Typed)})]
    assert "Question: q" in engine.prompts[1]  # the retry shows the same demos
