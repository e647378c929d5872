"""Synthetic generation: new examples written by the configured LM, seeded by real ones (seed 001).

What works with a small *base* model: a DSPy signature built on the fly whose input is a
hint (the target category and difficulty) and whose outputs are *all* the program's
fields. Real examples of that category are the demos, so the completion adapter shows
``Hint: … / Text: … / Intent: …`` blocks and the model continues with a new block.
Every attempt samples at a temperature in ``temperature`` with its own ``rollout_id``
and seed, so DSPy's cache never returns an earlier answer.

Stratified: attempts cycle through the categories of the seed examples (each capped at
``ceil(target / categories)`` accepted) and ask for the difficulty furthest below its
quota of the 30/50/20 easy/medium/hard mix. Seed examples have no difficulty of their
own: the shortest 30 % (by input length) count as easy, the longest 20 % as hard.

A candidate is accepted when it fits the schema, has non-empty inputs, is not a copy of a
seed or of an accepted example (inputs compared case-, spacing- and punctuation-insensitively)
and, for a program with a label field (or a ``category`` function), carries the hinted label
(category). Generation stops at the target, after ``max_consecutive_failures`` failed attempts
in a row, or when the attempt budget (``target × 5`` by default) is spent; every failure is
counted by reason.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from ratchet.data.collect.base import CollectionReport, Collector, ProgressFn, plural
from ratchet.data.files import load_examples
from ratchet.data.records import DIFFICULTIES, ExampleRecord, input_hash
from ratchet.errors import DataError, InputValidationError
from ratchet.lm.setup import LMBundle
from ratchet.programs.registry import ProgramSpec

__all__ = [
    "DIFFICULTY_MIX",
    "SeedExample",
    "SyntheticCollector",
    "difficulty_quotas",
    "generation_signature",
    "load_seed_examples",
]

DIFFICULTY_MIX: dict[str, float] = {"easy": 0.3, "medium": 0.5, "hard": 0.2}
_PUNCT = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class SeedExample:
    """A real example that guides generation: its values, category and (estimated) difficulty."""

    values: dict[str, Any]
    category: str
    difficulty: str


def load_seed_examples(spec: ProgramSpec, path: Path | None = None, *, home: Path | None = None
                       ) -> tuple[list[dict[str, Any]], Path]:
    """Labelled examples to seed generation: ``path``, else the bundled train data, else the latest dataset."""
    if path is not None:
        source = Path(path)
    elif spec.data.get("train") is not None:
        source = spec.data["train"]
    else:
        source = Path(home or ".ratchet") / "training_data" / spec.name / "latest" / "dataset.json"
        if not source.is_file():
            raise DataError(f"no seed examples for '{spec.name}': it has no bundled train data and there is no "
                            f"dataset at {source}; pass --seed-examples FILE (e.g. the output of `ratchet collect "
                            f"git` or `ratchet collect telemetry`)")
    loaded = load_examples(source, spec.schema)
    if not loaded.examples:
        reasons = "; ".join(loaded.errors[:3]) or "the file is empty"
        raise DataError(f"{source}: no usable seed examples for '{spec.name}' ({loaded.skipped} skipped: {reasons})")
    return [example.toDict() for example in loaded.examples], Path(source)


def difficulty_quotas(target: int, mix: dict[str, float] = DIFFICULTY_MIX) -> dict[str, int]:
    """``target`` split by ``mix`` with the largest-remainder method (the counts sum to ``target``)."""
    total = sum(mix.values())
    exact = {d: target * share / total for d, share in mix.items()}
    quotas = {d: math.floor(v) for d, v in exact.items()}
    for d in sorted(exact, key=lambda d: exact[d] - quotas[d], reverse=True)[: target - sum(quotas.values())]:
        quotas[d] += 1
    return quotas


def generation_signature(spec: ProgramSpec, hint_field: str = "hint") -> type[dspy.Signature]:
    """A signature with one input (the hint) and every field of the program as an output."""
    fields: dict[str, tuple[Any, Any]] = {
        hint_field: (str, dspy.InputField(desc="the kind of example to write")),
    }
    for field in (*spec.schema.inputs, *spec.schema.outputs):
        fields[field.name] = (field.annotation, dspy.OutputField(desc=field.description) if field.description
                              else dspy.OutputField())
    task = (spec.schema.instructions or spec.description or spec.name).strip()
    instructions = f"Write a new, realistic example of the kind the hint asks for. The task: {task}"
    return dspy.Signature(fields, instructions)


def _norm(value: Any) -> Any:
    return _PUNCT.sub(" ", value.casefold()).strip() if isinstance(value, str) else value


class SyntheticCollector(Collector):
    """Generate new examples of one program with an LM, guided by real seed examples."""

    source = "synthetic"

    def __init__(self, spec: ProgramSpec, lms: LMBundle, seeds: Sequence[dict[str, Any]], *, target: int,
                 seed: int = 0, demos: int = 8, max_attempts: int | None = None, max_consecutive_failures: int = 20,
                 temperature: tuple[float, float] = (0.8, 1.0), mix: dict[str, float] = DIFFICULTY_MIX,
                 seed_source: str | None = None) -> None:
        if target < 1:
            raise DataError(f"target must be at least 1, got {target}")
        if not seeds:
            raise DataError(f"no seed examples for '{spec.name}'")
        if set(mix) != set(DIFFICULTIES):
            raise DataError(f"the difficulty mix needs exactly {', '.join(DIFFICULTIES)}, got {sorted(mix)}")
        self.spec = spec
        self.lms = lms
        self.target = target
        self.seed = seed
        self.demos = max(1, demos)
        self.max_attempts = max_attempts if max_attempts is not None else target * 5
        self.max_consecutive_failures = max_consecutive_failures
        self.temperature = temperature
        self.mix = mix
        self.seed_source = seed_source
        self.seeds = self._seed_examples(seeds)
        # A new example is about as long as the seeds: bound the generation (a token is ≥ ~2 characters here),
        # so a rambling sample costs a few dozen tokens, not the model's whole max_tokens.
        longest = max(sum(len(f"{k}: {v}\n") for k, v in s.values.items()) for s in self.seeds)
        configured = int(getattr(lms.task, "kwargs", {}).get("max_tokens") or 256)
        self.max_tokens = min(configured, max(32, longest // 2 + 16))
        names = {*spec.schema.input_names, *spec.schema.output_names}
        self.hint_field = next(n for n in ("hint", "example_hint", "synthetic_hint") if n not in names)
        self.signature = generation_signature(spec, self.hint_field)

    def parameters(self) -> dict[str, Any]:
        return {"signature": self.spec.name, "target": self.target, "seed": self.seed, "demos": self.demos,
                "max_attempts": self.max_attempts, "max_consecutive_failures": self.max_consecutive_failures,
                "temperature": list(self.temperature), "difficulty_mix": self.mix, "model": self.lms.model_id,
                "seed_examples": self.seed_source, "seed_count": len(self.seeds)}

    def _seed_examples(self, seeds: Sequence[dict[str, Any]]) -> list[SeedExample]:
        schema = self.spec.schema
        length = [sum(len(str(s.get(n) or "")) for n in schema.input_names) for s in seeds]
        order = sorted(range(len(seeds)), key=lambda i: length[i])
        rank = {index: position / len(seeds) for position, index in enumerate(order)}
        easy_below = self.mix["easy"] / sum(self.mix.values())
        hard_from = 1.0 - self.mix["hard"] / sum(self.mix.values())
        out = []
        for i, values in enumerate(seeds):
            level = "easy" if rank[i] < easy_below else "hard" if rank[i] >= hard_from else "medium"
            out.append(SeedExample(values=dict(values), category=self.spec.category(dict(values)), difficulty=level))
        return out

    def _hint(self, category: str, difficulty: str) -> str:
        kind = self.spec.label_field if self.spec.category_fn is None and self.spec.label_field else "category"
        return f"{kind} {category}, {difficulty}"

    def _demos(self, category: str, difficulty: str, rng: random.Random, by_category: dict[str, list[SeedExample]]
               ) -> list[dspy.Example]:
        pool = list(by_category[category])
        rng.shuffle(pool)
        if len(pool) < self.demos:  # too few of this category: fill in with others (their own hints)
            others = [s for s in self.seeds if s.category != category]
            pool += rng.sample(others, min(len(others), self.demos - len(pool)))
        pool.sort(key=lambda s: (s.category != category, s.difficulty != difficulty))  # stable: still shuffled
        chosen = pool[: self.demos][::-1]  # the closest matches last, next to the new block
        return [dspy.Example(**{self.hint_field: self._hint(s.category, s.difficulty)}, **s.values) for s in chosen]

    def run(self, report: CollectionReport, progress: ProgressFn) -> dict[str, list[ExampleRecord]]:
        rng = random.Random(self.seed)
        by_category: dict[str, list[SeedExample]] = defaultdict(list)
        for s in self.seeds:
            by_category[s.category].append(s)
        categories = sorted(by_category)
        rng.shuffle(categories)
        per_category = math.ceil(self.target / len(categories))
        quotas = difficulty_quotas(self.target, self.mix)
        known = {self._key(s.values): "copied_seed" for s in self.seeds}
        predictor = dspy.Predict(self.signature)
        accepted: list[ExampleRecord] = []
        got_category: Counter[str] = Counter()
        got_difficulty: Counter[str] = Counter()
        consecutive = 0
        progress(0, self.target, "")
        while len(accepted) < self.target:
            if report.examined >= self.max_attempts:
                report.stopped = f"attempt budget spent: {plural(report.examined, 'attempt')}"
                break
            if consecutive >= self.max_consecutive_failures:
                report.stopped = f"stopped after {consecutive} consecutive failed attempts"
                break
            open_categories = [c for c in categories if got_category[c] < per_category] or categories
            category = open_categories[report.examined % len(open_categories)]
            difficulty = max(("medium", "easy", "hard"), key=lambda d: quotas[d] - got_difficulty[d])
            attempt = report.examined + 1
            report.examined = attempt
            hint = self._hint(category, difficulty)
            low, high = self.temperature
            temperature = round(low + (high - low) * rng.random(), 3)
            demos = self._demos(category, difficulty, rng, by_category)
            example = self._attempt(predictor, hint, demos, category, difficulty, attempt, temperature, known, report)
            if example is None:
                consecutive += 1
            else:
                consecutive = 0
                accepted.append(example)
                got_category[category] += 1
                got_difficulty[difficulty] += 1
            failed = report.examined - len(accepted)
            progress(len(accepted), self.target, f"{plural(attempt, 'attempt')}, {failed} failed")
        if len(accepted) >= self.target:
            report.stopped = f"target reached after {plural(report.examined, 'attempt')}"
        report.counts.update(attempts=report.examined, by_category=dict(got_category.most_common()),
                             by_difficulty={d: got_difficulty[d] for d in DIFFICULTIES}, difficulty_quotas=quotas,
                             seed_examples=len(self.seeds), seed_categories=len(categories))
        if len(accepted) < self.target:
            top = ", ".join(f"{reason} {n}" for reason, n in report.skipped.most_common(3)) or "none"
            report.hints.append(f"the model produced {plural(len(accepted), 'valid example')} of {self.target} "
                                f"(failures: {top}); try more or better seed examples (--seed-examples), a larger "
                                "model ([lm] model), or look at the first errors below")
        return {self.spec.name: accepted}

    def _key(self, values: dict[str, Any]) -> str:
        return input_hash({n: _norm(values.get(n)) for n in self.spec.schema.input_names})

    def _attempt(self, predictor: dspy.Predict, hint: str, demos: list[dspy.Example], category: str,
                 difficulty: str, attempt: int, temperature: float, known: dict[str, str],
                 report: CollectionReport) -> ExampleRecord | None:
        where = f"attempt {attempt} ({hint})"
        config = {"temperature": temperature, "rollout_id": self.seed * 1_000_000 + attempt,
                  "seed": (self.seed * 1_000_003 + attempt) % 2**31, "max_tokens": self.max_tokens}
        try:
            with dspy.context(lm=self.lms.task, adapter=self.lms.adapter):
                prediction = predictor(**{self.hint_field: hint}, demos=demos, config=config)
        except AdapterParseError as exc:
            report.skip("parse_error", f"{where}: {str(exc.lm_response or '')[:120]!r}")
            return None
        except Exception as exc:  # the LM failed: count it; the failure caps stop a dead model
            report.skip("lm_error", f"{where}: {type(exc).__name__}: {str(exc)[:200]}")
            return None
        schema = self.spec.schema
        raw = {name: prediction.get(name) for name in (*schema.input_names, *schema.output_names)}
        try:
            inputs = schema.validate_inputs({n: raw[n] for n in schema.input_names})
            outputs = schema.validate_outputs({n: raw[n] for n in schema.output_names})
        except InputValidationError as exc:
            report.skip("invalid_schema", f"{where}: {exc}")
            return None
        if any(value is None or (isinstance(value, str) and not value.strip()) for value in inputs.values()):
            report.skip("empty_input", where)
            return None
        values = {**inputs, **outputs}
        if self.spec.label_field is not None or self.spec.category_fn is not None:
            got = self.spec.category(values)
            if got != category:
                reason = "label_mismatch" if self.spec.category_fn is None else "category_mismatch"
                report.skip(reason, f"{where}: got {got!r}")
                return None
        key = self._key(values)
        if key in known:
            report.skip(known[key], f"{where}: {str(next(iter(inputs.values())))[:80]!r}")
            return None
        known[key] = "duplicate"
        example = ExampleRecord(
            values=values, signature=self.spec.name, source=self.source, difficulty=difficulty,
            category=self.spec.category(values),
            metadata={"seed": self.seed, "attempt": attempt, "hint": hint, "model": self.lms.model_id,
                      "temperature": temperature},
        )
        example.ensure_id(schema)
        return example
