from pathlib import Path
from typing import Literal

import dspy
import pytest

from ratchet.config import load_settings
from ratchet.errors import (
    ConfigError,
    DuplicateProgramError,
    InputValidationError,
    InvalidProgramError,
    UnknownProgramError,
)
from ratchet.programs import REGISTRY, ProgramRegistry, load_programs, program


class Classify(dspy.Signature):
    """Classify the text."""

    text: str = dspy.InputField()
    label: Literal["a", "b"] = dspy.OutputField()
    confidence: float | None = dspy.OutputField(desc="0 to 1")


def metric(example, prediction, trace=None):
    return prediction.label == example.label


def test_register_and_read_schema() -> None:
    registry = ProgramRegistry()

    @program("classify", metric=metric, registry=registry, label_field="label")
    def factory() -> dspy.Module:
        return dspy.Predict(Classify)

    spec = registry.get("classify")
    assert spec.description == "Classify the text."
    assert spec.schema.input_names == ["text"]
    assert spec.schema.output_names == ["label", "confidence"]
    label = spec.schema.outputs[0]
    assert label.choices == ("a", "b")
    assert spec.schema.outputs[1].optional
    assert spec.source.endswith("test_registry:test_register_and_read_schema.<locals>.factory")
    assert spec.source_file.endswith("test_registry.py:" + str(factory.__code__.co_firstlineno))
    assert isinstance(spec.build(), dspy.Predict)
    assert spec.build() is not spec.build()


def test_signature_is_derived_from_chain_of_thought_without_reasoning() -> None:
    registry = ProgramRegistry()
    program("cot", metric=metric, registry=registry)(lambda: dspy.ChainOfThought(Classify))
    assert registry.get("cot").schema.output_names == ["label", "confidence"]


def test_multi_predictor_modules_need_an_explicit_signature() -> None:
    class Two(dspy.Module):
        def __init__(self):
            super().__init__()
            self.a = dspy.Predict(Classify)
            self.b = dspy.Predict(Classify)

    registry = ProgramRegistry()
    with pytest.raises(InvalidProgramError, match="2 predictors; pass signature="):
        program("two", metric=metric, registry=registry)(Two)
    program("two", metric=metric, registry=registry, signature=Classify)(Two)
    assert "two" in registry


def test_duplicate_name_from_another_factory_is_refused() -> None:
    registry = ProgramRegistry()

    def first() -> dspy.Module:
        return dspy.Predict(Classify)

    def second() -> dspy.Module:
        return dspy.Predict(Classify)

    program("dup", metric=metric, registry=registry)(first)
    with pytest.raises(DuplicateProgramError, match=r"already registered by .*first"):
        program("dup", metric=metric, registry=registry)(second)
    program("dup", metric=metric, registry=registry)(first)  # re-import of the same factory is fine


def test_factory_must_return_a_dspy_module() -> None:
    with pytest.raises(InvalidProgramError, match=r"must return a dspy\.Module, got str"):
        program("bad", metric=metric, registry=ProgramRegistry())(lambda: "not a module")


def test_factory_that_raises_is_reported() -> None:
    def broken() -> dspy.Module:
        raise RuntimeError("boom")

    with pytest.raises(InvalidProgramError, match="factory raised RuntimeError: boom"):
        program("bad", metric=metric, registry=ProgramRegistry())(broken)


@pytest.mark.parametrize("bad_metric", [lambda example: True, lambda: True, lambda a, b, c, d: True, 42])
def test_metric_must_accept_example_prediction_trace(bad_metric) -> None:
    with pytest.raises(InvalidProgramError, match="metric"):
        program("m", metric=bad_metric, registry=ProgramRegistry())


def test_metric_with_optional_trace_and_kwargs_is_accepted() -> None:
    program("m1", metric=lambda e, p, trace=None: 1.0, registry=ProgramRegistry())
    program("m2", metric=lambda *args: 1.0, registry=ProgramRegistry())


@pytest.mark.parametrize("name", ["../etc", "has space", "", "9lives", "a/b", "x" * 101])
def test_signature_names_are_safe_identifiers(name: str) -> None:
    with pytest.raises(InvalidProgramError, match="invalid signature name"):
        program(name, metric=metric, registry=ProgramRegistry())


def test_unknown_signature_suggests_a_close_name() -> None:
    registry = ProgramRegistry()
    program("classify_intent", metric=metric, registry=registry)(lambda: dspy.Predict(Classify))
    with pytest.raises(UnknownProgramError, match="did you mean 'classify_intent'"):
        registry.get("classify_intnet")


def test_input_validation_names_the_field() -> None:
    registry = ProgramRegistry()
    program("c", metric=metric, registry=registry)(lambda: dspy.Predict(Classify))
    schema = registry.get("c").schema
    assert schema.validate_inputs({"text": "hi"}) == {"text": "hi"}
    with pytest.raises(InputValidationError, match="missing input field 'text'") as err:
        schema.validate_inputs({})
    assert err.value.field == "text"
    with pytest.raises(InputValidationError, match="unknown input field 'txt'"):
        schema.validate_inputs({"text": "hi", "txt": "x"})
    with pytest.raises(InputValidationError, match="input field 'text'"):
        schema.validate_inputs({"text": ["not", "a", "string"]})
    with pytest.raises(InputValidationError, match="output field 'label'"):
        schema.validate_outputs({"label": "c"})
    assert schema.validate_outputs({"label": "a"}) == {"label": "a", "confidence": None}


def test_bundled_examples_are_registered_from_config() -> None:
    registry = load_programs(load_settings())
    assert {"classify_intent", "extract_booking"} <= set(registry.names())
    intent = registry.get("classify_intent")
    assert len(intent.schema.outputs[0].choices) == 10
    assert intent.data["test"].is_file()


def test_programs_load_from_a_python_file(tmp_path: Path) -> None:
    (tmp_path / "my_programs.py").write_text(
        "import dspy, ratchet\n"
        "@ratchet.program('echo_file_program', metric=lambda e, p, trace=None: 1.0)\n"
        "def echo():\n"
        "    return dspy.Predict('question -> answer')\n"
    )
    (tmp_path / "ratchet.toml").write_text('programs = ["my_programs.py"]\n')
    try:
        registry = load_programs(load_settings())
        assert "echo_file_program" in registry
        assert registry.get("echo_file_program").source_file.startswith(str(tmp_path / "my_programs.py"))
        load_programs(load_settings())  # importing twice does not register twice
    finally:
        REGISTRY.unregister("echo_file_program")


def test_a_missing_programs_module_names_the_config_key(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text('programs = ["no_such_module_xyz"]\n')
    with pytest.raises(ConfigError, match=r"ratchet.toml: key 'programs': cannot load 'no_such_module_xyz'"):
        load_programs(load_settings())
    (tmp_path / "ratchet.toml").write_text('programs = ["missing.py"]\n')
    with pytest.raises(ConfigError, match="no such file"):
        load_programs(load_settings())


def test_neutral_inputs_are_valid_for_every_input_type() -> None:
    """The warm-up calls each served version on these: they must pass the schema's own validation."""
    from ratchet.programs.schema import ProgramSchema

    class Mixed(dspy.Signature):
        text: str = dspy.InputField()
        channel: Literal["email", "chat"] = dspy.InputField()
        count: int = dspy.InputField()
        weight: float = dspy.InputField()
        urgent: bool = dspy.InputField()
        tags: list[str] = dspy.InputField()
        note: str | None = dspy.InputField()
        answer: str = dspy.OutputField()

    schema = ProgramSchema.from_signature(Mixed)
    neutral = schema.neutral_inputs()
    assert neutral == {"text": "hello", "channel": "email", "count": 0, "weight": 0.0, "urgent": False, "tags": [],
                       "note": "hello"}
    assert schema.validate_inputs(neutral) == neutral
