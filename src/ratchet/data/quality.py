"""The 0–100 quality score of a training example, and its difficulty.

``quality = 100 × (0.30·completeness + 0.25·clarity + 0.25·relevance + 0.20·diversity)``,
each component in [0, 1] and kept in ``_meta.metadata["quality_components"]``:

completeness
    ``0.75 × (share of required fields that are non-empty) + 0.25 × (1 if at least one output is
    filled else 0)``. Optional outputs are not all expected — a message names some slots, not
    every one — so filling one of them is full credit; an example with every output empty
    (possible only when all outputs are optional) teaches only "nothing here".
clarity
    Of the input text (string inputs joined): ``mean(length, alphanumeric) × min(runs, printable)``.
    *length* is 1 from 12 to 2,000 characters, ``chars/12`` below, falling linearly to 0.5 at
    10,000 above, and at most 0.7 for two words, 0.4 for one. *alphanumeric* is 1 when at
    least 60 % of the non-space characters are letters or digits, ``share/0.6`` below.
    *runs* is 1 when no non-digit character repeats more than 4 times in a row, falling by
    1/16 per extra repetition. *printable* is ``1 − 10 × (share of control characters and
    U+FFFD replacement characters)``, at least 0.
relevance
    Mean over the output fields that are filled or required: 0 for an empty required field
    or a placeholder (``TODO``, ``N/A``, ``...``, ``TBD``, ``unknown`` …); 0.2 for a string that
    repeats a whole input of four words or more (ten for extraction-like programs, whose
    slot may well be a short message entire); for string outputs of extraction-like programs
    (instructions, descriptions or name say extract/copy/quote/verbatim/span) 1 when the
    value occurs in the input, else 0.6; 1 otherwise (``Literal`` outputs the schema checked
    included). 0.7 when no output is filled and none is required.
diversity
    ``1 − similarity`` to the closest example already accepted (Jaccard of character
    shingles, see :mod:`ratchet.data.dedup`); 1 when nothing similar was found.

Difficulty (when the example does not bring its own): ``complexity = words of input + 4 ×
(filled outputs beyond the first)``; easy ≤ 7 < medium ≤ 12 < hard. On Banking77 these cut
points give about 30 % / 50 % / 20 %, seed 001's target distribution.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ratchet.programs.registry import ProgramSpec
from ratchet.programs.schema import ProgramSchema

__all__ = [
    "PLACEHOLDERS",
    "WEIGHTS",
    "QualityScore",
    "QualityScorer",
    "assign_difficulty",
    "clarity",
    "is_extraction_like",
    "is_filled",
    "score_example",
]

WEIGHTS = {"completeness": 0.30, "clarity": 0.25, "relevance": 0.25, "diversity": 0.20}
PLACEHOLDERS = frozenset({
    "todo", "tbd", "fixme", "n/a", "na", "none", "null", "nil", "unknown", "?", "??", "???", "-", "--", "...",
    "…", "xxx", "placeholder", "lorem ipsum", "<placeholder>", "<todo>", "[todo]",
})
EASY_MAX, MEDIUM_MAX = 7, 12
COPY_WORDS, COPY_WORDS_EXTRACTION = 4, 10  # an output repeating a whole input this long is a lazy label
MIN_CHARS, MAX_CLEAR_CHARS, FLOOR_CHARS = 12, 2_000, 10_000

_EXTRACTION_WORDS = re.compile(r"\b(extract\w*|cop(y|ies)|quot\w*|verbatim|span)\b", re.IGNORECASE)
_RUN = re.compile(r"([^\s\d])\1{4,}")


@dataclass(frozen=True)
class QualityScore:
    """The four components (each 0–1) and their weighted total (0–100)."""

    completeness: float
    clarity: float
    relevance: float
    diversity: float

    @property
    def total(self) -> float:
        return round(100.0 * sum(WEIGHTS[name] * value for name, value in self.components().items()), 1)

    def components(self) -> dict[str, float]:
        return {"completeness": round(self.completeness, 3), "clarity": round(self.clarity, 3),
                "relevance": round(self.relevance, 3), "diversity": round(self.diversity, 3)}


def is_filled(value: Any) -> bool:
    """Not None, not an empty or blank string, not an empty collection."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, tuple, set, dict)):
        return bool(value)
    return True


def _input_strings(values: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    return [v for name in names if isinstance(v := values.get(name), str)]


def clarity(text: str) -> float:
    """How readable an input is: length, mostly letters/digits, no long runs, printable (see the module doc)."""
    stripped = text.strip()
    if not stripped:
        return 0.0
    chars, words = len(stripped), len(stripped.split())
    if chars < MIN_CHARS:
        length = chars / MIN_CHARS
    elif chars <= MAX_CLEAR_CHARS:
        length = 1.0
    else:
        length = max(0.5, 1.0 - 0.5 * (chars - MAX_CLEAR_CHARS) / (FLOOR_CHARS - MAX_CLEAR_CHARS))
    length = min(length, 1.0 if words >= 3 else 0.7 if words == 2 else 0.4)
    compact = "".join(stripped.split())
    alnum = min(1.0, sum(map(str.isalnum, compact)) / len(compact) / 0.6)
    longest = max((len(m.group(0)) for m in _RUN.finditer(stripped)), default=0)
    runs = 1.0 if longest <= 4 else max(0.0, 1.0 - (longest - 4) / 16)
    bad = 0
    if not compact.isprintable() or "\ufffd" in compact:
        bad = sum(1 for c in compact if c == "\ufffd" or not c.isprintable())
    printable = max(0.0, 1.0 - 10.0 * bad / chars)
    return (length + alnum) / 2 * min(runs, printable)


def is_extraction_like(spec: ProgramSpec) -> bool:
    """Whether the program copies its string outputs out of its input (instructions, descriptions or name say so)."""
    texts = [spec.name.replace("_", " "), spec.schema.instructions, *(f.description for f in spec.schema.outputs)]
    return any(_EXTRACTION_WORDS.search(t or "") for t in texts)


def _norm(value: str) -> str:
    return " ".join(value.casefold().split())


def _is_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return _norm(value) in PLACEHOLDERS
    if isinstance(value, (list, tuple)) and value:
        return all(_is_placeholder(v) for v in value)
    return False


def assign_difficulty(values: Mapping[str, Any], schema: ProgramSchema) -> str:
    """easy / medium / hard from the input's length in words and the number of filled outputs."""
    return _difficulty(values, schema.input_names, schema.output_names)


def _difficulty(values: Mapping[str, Any], inputs: Sequence[str], outputs: Sequence[str]) -> str:
    words = sum(len(s.split()) for s in _input_strings(values, inputs))
    filled = sum(is_filled(values.get(name)) for name in outputs)
    complexity = words + 4 * max(0, filled - 1)
    if complexity <= EASY_MAX:
        return "easy"
    return "medium" if complexity <= MEDIUM_MAX else "hard"


class QualityScorer:
    """Scores examples of one program (what the schema says is worked out once)."""

    def __init__(self, spec: ProgramSpec) -> None:
        schema = spec.schema
        self.spec = spec
        self.extraction = is_extraction_like(spec)
        self._inputs = schema.input_names
        self._outputs = [(f.name, not f.optional, bool(f.choices)) for f in schema.outputs]
        self._required = [f.name for f in (*schema.inputs, *schema.outputs) if not f.optional]
        self._copy_words = COPY_WORDS_EXTRACTION if self.extraction else COPY_WORDS

    def completeness(self, values: Mapping[str, Any]) -> float:
        """Required fields non-empty (75 %), at least one output filled (25 %)."""
        required = self._required
        share = sum(is_filled(values.get(name)) for name in required) / len(required) if required else 1.0
        any_output = any(is_filled(values.get(name)) for name, _, _ in self._outputs)
        return 0.75 * share + 0.25 * any_output

    def relevance(self, values: Mapping[str, Any]) -> float:
        """Outputs that fit the signature: no placeholders, no copies of the input, grounded extractions."""
        inputs = [_norm(s) for s in _input_strings(values, self._inputs)]
        haystack = " ".join(inputs)
        scores = []
        for name, required, has_choices in self._outputs:
            value = values.get(name)
            if not is_filled(value):
                if required:
                    scores.append(0.0)
                continue
            if has_choices:  # a Literal the schema already checked
                scores.append(1.0)
            elif _is_placeholder(value):
                scores.append(0.0)
            elif isinstance(value, str) and any(_norm(value) == s and len(s.split()) >= self._copy_words
                                                for s in inputs):
                scores.append(0.2)
            elif isinstance(value, str) and self.extraction:
                scores.append(1.0 if _norm(value) in haystack else 0.6)
            else:
                scores.append(1.0)
        return sum(scores) / len(scores) if scores else 0.7

    def difficulty(self, values: Mapping[str, Any]) -> str:
        """See :func:`assign_difficulty`."""
        return _difficulty(values, self._inputs, [name for name, _, _ in self._outputs])

    def score(self, values: Mapping[str, Any], *, similarity: float = 0.0) -> QualityScore:
        """Score one schema-valid example; ``similarity`` is to the closest example already accepted."""
        return QualityScore(
            completeness=self.completeness(values),
            clarity=clarity("\n".join(_input_strings(values, self._inputs))),
            relevance=self.relevance(values),
            diversity=max(0.0, min(1.0, 1.0 - similarity)),
        )


def score_example(values: Mapping[str, Any], spec: ProgramSpec, *, similarity: float = 0.0) -> QualityScore:
    """Score one schema-valid example of ``spec`` (see :class:`QualityScorer` to score many)."""
    return QualityScorer(spec).score(values, similarity=similarity)
