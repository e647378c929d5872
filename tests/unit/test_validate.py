import json
from typing import Any

import dspy
import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from ratchet.config.settings import DataSettings
from ratchet.data.dedup import (
    Deduplicator,
    NearDuplicateIndex,
    input_text,
    lsh_params,
    normalize_text,
    shingle_hash,
    shingles,
)
from ratchet.data.quality import WEIGHTS, QualityScorer, assign_difficulty, clarity, is_extraction_like
from ratchet.data.records import ExampleRecord, example_id
from ratchet.data.validate import Rejection, Validator, check_schema, validate_examples
from ratchet.examples.classify_intent import DATA as BANKING
from ratchet.programs import REGISTRY
from ratchet.programs.registry import ProgramRegistry, program

INTENT = REGISTRY.get("classify_intent")
BOOKING = REGISTRY.get("extract_booking")
BANKING_TEXTS = [json.loads(line)["text"] for line in (BANKING / "train.jsonl").read_text().splitlines()]


def jaccard(a: str, b: str, size: int = 3) -> float:
    x, y = shingles(normalize_text(a), size), shingles(normalize_text(b), size)
    return len(x & y) / len(x | y)


def rec(signature: str = "classify_intent", **values: Any) -> ExampleRecord:
    meta = values.pop("_meta", {})
    return ExampleRecord(values=values, signature=signature, source=meta.pop("source", "test"), **meta)


def intent(text: str, label: str = "card_arrival", **meta: Any) -> ExampleRecord:
    return rec(text=text, intent=label, _meta=meta)


def booking(text: str, **slots: Any) -> ExampleRecord:
    return rec("extract_booking", text=text, **slots)


class Summarize(dspy.Signature):
    """Summarize the message in one line."""

    text: str = dspy.InputField()
    summary: str = dspy.OutputField()


_private = ProgramRegistry()


@program("summarize", metric=lambda example, prediction, trace=None: 1.0, registry=_private)
def summarize() -> dspy.Module:
    return dspy.Predict(Summarize)


SUMMARIZE = _private.get("summarize")


# -- dedup: sketches, index ---------------------------------------------------------------------


def test_vectorised_sketches_equal_datasketch_minhash() -> None:
    index = NearDuplicateIndex(0.8, 64, 3, seed=7)
    texts = ["where is my new card?", "ab", "", "é ünïcode 😀 text here", "x", "a  b\tc", *BANKING_TEXTS[:200]]
    normalised = [normalize_text(t) for t in texts]
    for text, sketch in zip(normalised, index.sketches(normalised), strict=True):
        reference = MinHash(num_perm=64, seed=7, hashfunc=shingle_hash, scheme="affine32")
        reference.update_batch(list(shingles(text, 3)))
        assert np.array_equal(reference.hashvalues, sketch.hashvalues), text
        assert sketch.shingles.tolist() == sorted({shingle_hash(s) for s in shingles(text, 3)})
    assert index.sketch("").empty and index.sketch("").hashvalues.max() == np.uint32(0xFFFFFFFF)


def test_very_long_texts_are_sketched_a_slice_at_a_time() -> None:
    rng = np.random.default_rng(0)
    long = "".join(chr(0x4E00 + int(c)) for c in rng.integers(0, 300, 40_000))  # > 32,768 distinct shingles
    index = NearDuplicateIndex(0.8, 32, 3)
    sketches = index.sketches(["short text", long, "another short text"])
    reference = MinHash(num_perm=32, seed=1, hashfunc=shingle_hash, scheme="affine32")
    reference.update_batch(list(shingles(long, 3)))
    assert sketches[1].shingles.size > 32_768
    assert np.array_equal(reference.hashvalues, sketches[1].hashvalues)
    assert index.query(sketches[0]) == [] and not sketches[2].empty


def test_band_table_has_the_buckets_of_datasketch_lsh() -> None:
    index = NearDuplicateIndex(0.8, 128, 3)
    lsh = MinHashLSH(threshold=0.8, num_perm=128, params=(index.bands, index.rows))
    texts = [normalize_text(t) for t in BANKING_TEXTS[:400]]
    texts += [t.replace("card", "crad") for t in texts[:100]] + [t + "!" for t in texts[:100]]
    for position, sketch in enumerate(index.sketches(texts)):
        assert set(index.candidates(sketch)) == set(lsh.query(index.minhash(sketch)))
        index.add(position, sketch)
        lsh.insert(position, index.minhash(sketch))


def test_lsh_params_put_the_threshold_on_the_steep_part() -> None:
    assert lsh_params(0.8, 128) == (21, 6)
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.995


def test_near_duplicates_above_and_below_the_threshold() -> None:
    base = "I have been waiting over a week. Is the card still coming?"
    close = "I have been waiting over a week, is the card still coming??"
    far = "I have been waiting a month. Is the new card coming soon?"
    assert jaccard(base, close) >= 0.8 > jaccard(base, far)
    index = NearDuplicateIndex(0.8)
    index.add("base", normalize_text(base))
    assert index.query(normalize_text(close)) == ["base"]
    assert index.query(normalize_text(far)) == []
    key, similarity = index.similar(normalize_text(close))[0]
    assert key == "base" and similarity == pytest.approx(jaccard(base, close))


def test_index_reports_exact_similarities_and_ignores_empty_texts() -> None:
    index = NearDuplicateIndex(0.8)
    texts = [normalize_text(t) for t in BANKING_TEXTS[:300]]
    for i, text in enumerate(texts):
        index.add(i, text)
    index.add("empty", "")
    probe = texts[10] + "?"
    for key, similarity in index.similar(probe):
        assert similarity == pytest.approx(jaccard(texts[key], probe))
    assert index.query(probe)[0] == 10
    assert index.similar("") == [] and index.best_match("zzzz qqqq") is None
    assert len(index) == 301


def test_input_text_joins_every_input_in_schema_order() -> None:
    assert input_text({"text": "  Where IS\n my card ", "intent": "x"}, INTENT.schema) == "where is my card"


def test_deduplicator_exact_and_conflicting() -> None:
    dedup = Deduplicator.from_settings(DataSettings())
    sketch = dedup.index.sketch("where is my card")
    assert dedup.check("h1", sketch, "o1") == (None, 0.0)
    dedup.add("kept", "h1", sketch, "o1")
    match, similarity = dedup.check("h1", sketch, "o2")
    assert match is not None and match.kind == "exact" and match.kept_id == "kept" and similarity == 1.0
    assert "conflicting labels" in match.reason
    match, _ = dedup.check("h2", dedup.index.sketch("where is my card?"), "o1")
    assert match is not None and match.code == "near_duplicate" and "kept" in match.reason


# -- schema -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "code", "words"), [
    ({"text": "where is my card"}, "schema", ["missing output field 'intent'"]),
    ({"text": "where is my card", "intent": "not_an_intent"}, "schema", ["intent"]),
    ({"text": "where is my card", "intnet": "card_arrival"}, "schema", ["unknown field 'intnet'"]),
    ({"text": 42, "intent": "card_arrival"}, "schema", ["text", "string"]),
    ({"intent": "card_arrival"}, "schema", ["missing input field 'text'"]),
    ({"text": "   ", "intent": "card_arrival"}, "empty_input", ["required input 'text' is empty"]),
    ({"text": "x" * 60, "intent": "card_arrival"}, "too_long", ["'text'", "60", "max_field_chars 50"]),
])
def test_schema_rejections_carry_a_reason(values: dict[str, Any], code: str, words: list[str]) -> None:
    result = validate_examples([rec(**values)], INTENT, DataSettings(max_field_chars=50))
    assert not result.accepted
    [rejection] = result.rejected
    assert rejection.code == code
    for word in words:
        assert word in rejection.reason
    assert rejection.record.id  # rejected examples are named too
    assert rejection.to_json()["_meta"]["metadata"]["rejection_reason"] == rejection.reason


def test_check_schema_coerces_and_fills_optional_outputs() -> None:
    values = check_schema({"text": "Table for 2 on Friday", "people": "2"}, BOOKING, 1000)
    assert values == {"text": "Table for 2 on Friday", "people": "2", "date": None, "time": None,
                      "first_name": None, "last_name": None}


def test_wrong_signature_is_rejected() -> None:
    result = validate_examples([booking("table for two")], INTENT)
    assert result.rejected[0].code == "wrong_signature"


# -- quality ------------------------------------------------------------------------------------


def components(record: ExampleRecord) -> dict[str, float]:
    return record.metadata["quality_components"]


def test_quality_total_is_the_documented_weighted_sum() -> None:
    [good] = validate_examples([intent("What can I do if my card still hasn't arrived after 2 weeks?")],
                               INTENT).accepted
    parts = components(good)
    assert parts == {"completeness": 1.0, "clarity": 1.0, "relevance": 1.0, "diversity": 1.0}
    assert good.quality == 100.0
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)
    [short] = validate_examples([intent("card?")], INTENT).accepted
    expected = round(100 * sum(WEIGHTS[k] * v for k, v in components(short).items()), 1)
    assert short.quality == expected < good.quality


def test_clarity_is_monotone_in_what_it_measures() -> None:
    clear = "Where is the card I ordered last week?"
    assert clarity(clear) == 1.0
    assert clarity("card") < clarity("my card") < clarity("where is my card")  # length and words
    assert clarity("%%%% $$$$ ##") < clarity("ab%% $$$$ ##") < clarity(clear)  # letters and digits
    assert clarity("where is my caaaaaaaaard") < clarity("where is my caaaaaard") < clarity("where is my card")
    assert clarity("where is my \x00\x01 card") < clarity(clear)
    assert clarity("where is my car\ufffd\ufffd") < clarity("where is my card")
    assert clarity("paid 1000000 euros for it") == 1.0  # digit runs are fine
    assert clarity("") == 0.0


def test_relevance_placeholders_copies_and_grounding() -> None:
    scorer = QualityScorer(SUMMARIZE)
    text = "The card I ordered two weeks ago has still not arrived"
    assert scorer.relevance({"text": text, "summary": "Card not arrived"}) == 1.0
    assert scorer.relevance({"text": text, "summary": text}) == 0.2  # a copy of the whole input
    for placeholder in ("TODO", "N/A", "...", " tbd ", "unknown"):
        assert scorer.relevance({"text": text, "summary": placeholder}) == 0.0
    assert scorer.relevance({"text": text, "summary": ""}) == 0.0
    assert scorer.completeness({"text": text, "summary": ""}) == pytest.approx(0.75 * 0.5)
    assert not is_extraction_like(SUMMARIZE) and is_extraction_like(BOOKING) and not is_extraction_like(INTENT)

    booking_scorer = QualityScorer(BOOKING)
    message = "A table for 4 people on Friday please"
    grounded = booking_scorer.relevance({"text": message, "people": "4 people", "date": "Friday"})
    ungrounded = booking_scorer.relevance({"text": message, "people": "4 people", "date": "Saturday"})
    placeholder = booking_scorer.relevance({"text": message, "people": "4 people", "date": "N/A"})
    assert grounded == 1.0 > ungrounded > placeholder
    assert booking_scorer.relevance({"text": "2 adults and 3 children", "people": "2 adults and 3 children"}) == 1.0
    long = "we are a group of friends and would like a table for tonight"
    assert booking_scorer.relevance({"text": long, "people": long}) == 0.2
    assert booking_scorer.relevance({"text": message}) == 0.7
    assert booking_scorer.completeness({"text": message}) == 0.75
    assert booking_scorer.completeness({"text": message, "time": "8pm"}) == 1.0


def test_scores_for_good_and_bad_examples() -> None:
    good = validate_examples([booking("Book a table for 4 people on Friday at 8pm, name Jane Doe", people="4 people",
                                      date="Friday", time="8pm", first_name="Jane", last_name="Doe")], BOOKING)
    empty = validate_examples([booking("Can I bring my dog to the restaurant?")], BOOKING)
    junk = validate_examples([booking("heeeeeeeeeeeeeeeeeeeeeelp", people="TODO")], BOOKING)
    scores = [r.accepted[0].quality for r in (good, empty, junk)]
    assert scores[0] == 100.0 and scores[0] > scores[1] > scores[2]
    assert components(junk.accepted[0])["clarity"] < 0.2
    assert components(junk.accepted[0])["relevance"] == 0.0


def test_diversity_is_one_minus_the_closest_accepted_similarity() -> None:
    first = "I have been waiting over a week. Is the card still coming?"
    second = "I have been waiting a month. Is the new card coming soon?"
    result = validate_examples([intent(first), intent(second)], INTENT)
    assert [r.values["text"] for r in result.accepted] == [first, second]
    assert components(result.accepted[0])["diversity"] == 1.0
    assert components(result.accepted[1])["diversity"] == pytest.approx(1 - jaccard(first, second), abs=1e-3)


# -- difficulty and category --------------------------------------------------------------------


def test_difficulty_heuristic_and_kept_values() -> None:
    schema = BOOKING.schema
    assert assign_difficulty({"text": "table for two"}, schema) == "easy"
    assert assign_difficulty({"text": "could we get a table for two people tonight please"}, schema) == "medium"
    assert assign_difficulty({"text": " ".join(["word"] * 13)}, schema) == "hard"
    # filled outputs beyond the first add to the complexity
    assert assign_difficulty({"text": "two people on friday evening", "people": "two"}, schema) == "easy"
    assert assign_difficulty({"text": "two people on friday evening", "people": "two", "date": "friday"},
                             schema) == "medium"
    result = validate_examples([intent("where is my card", difficulty="hard", category="mine"),
                                intent("I ordered a card last week, when will it arrive?")], INTENT)
    kept, assigned = result.accepted
    assert (kept.difficulty, kept.category) == ("hard", "mine")
    assert (assigned.difficulty, assigned.category) == ("medium", "card_arrival")
    [slots] = validate_examples([booking("Friday for 2 people", people="2", date="Friday")], BOOKING).accepted
    assert slots.category == "date+people"


def test_existing_quality_is_kept_in_metadata_and_ids_filled() -> None:
    record = intent("where is my card", quality=12.0, id="given-id")
    [accepted] = validate_examples([record, intent("when will my card arrive")], INTENT).accepted[:1]
    assert accepted.id == "given-id" and accepted.metadata["source_quality"] == 12.0 and accepted.quality != 12.0
    assert record.quality == 12.0 and "quality_components" not in record.metadata  # the input is not modified
    [other] = validate_examples([intent("when will my card arrive")], INTENT).accepted
    assert other.id == example_id("classify_intent", {"text": "when will my card arrive"})


# -- duplicates ---------------------------------------------------------------------------------


def test_exact_and_near_duplicates_name_the_kept_example() -> None:
    base = "I have been waiting over a week. Is the card still coming?"
    records = [intent(base), intent(base), intent(base, "lost_or_stolen_card"),
               intent("I have been waiting over a week, is the card still coming??"),
               intent("I have been waiting a month. Is the new card coming soon?")]
    result = validate_examples(records, INTENT)
    kept = result.accepted[0].id
    assert [r.values["text"] for r in result.accepted] == [base, records[4].values["text"]]
    codes = [r.code for r in result.rejected]
    assert codes == ["exact_duplicate", "exact_duplicate", "near_duplicate"]
    assert all(kept in r.reason for r in result.rejected)
    assert "conflicting labels" in result.rejected[1].reason and "conflicting" not in result.rejected[0].reason
    similarity = jaccard(base, records[3].values["text"])
    assert f"Jaccard similarity {similarity:.2f} >= 0.80" in result.rejected[2].reason
    assert result.report.rejections == {"exact_duplicate": 2, "near_duplicate": 1}
    assert result.report.duplicate_rate == pytest.approx(0.6)


def test_threshold_comes_from_settings() -> None:
    a, b = "where is my new card", "where is my new card please"
    similarity = jaccard(a, b)
    strict = validate_examples([intent(a), intent(b)], INTENT, DataSettings(near_duplicate_threshold=similarity + 0.01))
    loose = validate_examples([intent(a), intent(b)], INTENT, DataSettings(near_duplicate_threshold=similarity - 0.01))
    assert len(strict.accepted) == 2 and len(loose.accepted) == 1


def test_dedup_against_an_existing_dataset() -> None:
    existing = [intent("where is my card", id="old-1"), intent("how do I top up by card", id="old-2")]
    result = validate_examples([intent("Where is my card?"), intent("where is my card"), intent("my pin is blocked")],
                               INTENT, existing=existing)
    assert [r.code for r in result.rejected] == ["near_duplicate", "exact_duplicate"]
    assert "old-1" in result.rejected[0].reason and "old-1" in result.rejected[1].reason
    assert result.report.seeded == 2 and result.report.accepted == 1


def test_incremental_check_matches_batch_validation() -> None:
    records = [intent(t) for t in BANKING_TEXTS[:300]] + [intent(t + "!") for t in BANKING_TEXTS[:50]]
    batch = validate_examples(records, INTENT)
    validator = Validator(INTENT)
    outcomes = [validator.check(r) for r in records]
    accepted = [o for o in outcomes if not isinstance(o, Rejection)]
    assert [r.id for r in accepted] == [r.id for r in batch.accepted]
    assert [r.quality for r in accepted] == [r.quality for r in batch.accepted]


def test_report_counts_and_distributions() -> None:
    records = [intent(t, source="git" if i % 2 else "synthetic") for i, t in enumerate(BANKING_TEXTS[:120])]
    records += [intent("x", "not_an_intent"), intent(BANKING_TEXTS[0])]
    progress: list[int] = []
    result = validate_examples(records, INTENT, on_progress=progress.append)
    report = result.report.to_dict()
    assert sum(progress) == len(records) == report["examples"]
    assert report["accepted"] + report["rejected"] == len(records)
    assert report["rejections"]["schema"] == 1 and report["rejections"]["exact_duplicate"] >= 1
    assert report["quality"]["min"] <= report["quality"]["p10"] <= report["quality"]["mean"] <= report["quality"]["max"]
    assert sum(report["difficulty"].values()) == report["accepted"] == sum(report["categories"].values())
    assert set(report["sources"]) == {"git", "synthetic"}
    assert report["seconds"] >= 0
