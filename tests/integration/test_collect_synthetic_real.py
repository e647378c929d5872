"""Synthetic generation on the real embedded model (Gemma 3 270M): a tiny target, bounded attempts."""

from pathlib import Path

import pytest

from ratchet.config import Settings
from ratchet.data.collect import SyntheticCollector, load_seed_examples
from ratchet.data.records import read_batch
from ratchet.programs import load_programs

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_the_embedded_model_writes_new_valid_examples(embedded, tmp_path: Path) -> None:
    spec = load_programs(Settings()).get("classify_intent")
    seeds, _ = load_seed_examples(spec)
    report = SyntheticCollector(spec, embedded, seeds, target=2, demos=6, max_attempts=6).collect(tmp_path)

    assert report.examined <= 6 and report.examined == report.collected + sum(report.skipped.values())
    assert report.collected >= 1, report.to_dict()  # measured: 3 of 3 attempts valid at seed 0
    seed_texts = {s["text"].casefold() for s in seeds}
    for example in read_batch(tmp_path / "classify_intent.jsonl"):
        assert example.values["intent"] in spec.schema.outputs[0].choices
        assert example.values["text"].strip() and example.values["text"].casefold() not in seed_texts
        assert example.metadata["model"] == embedded.model_id and example.difficulty in ("easy", "medium", "hard")
        assert example.metadata["hint"] == f"intent {example.values['intent']}, {example.difficulty}"
