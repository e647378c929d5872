"""Drift detection on real shifts: Banking77 traffic from the program's intents, and from intents it never saw.

    python benchmarks/drift_validation.py [--banking77 ../shared/datasets/banking77] [--windows 200] [--size 100]
                                          [--shifts 0.1,0.3,0.5,1.0] [--other 600] [--demos 40] [--no-model]
                                          [--seed 0] [--out benchmarks/results/drift_validation.json]

The set-up is the one the check sees in production. A temporary home gets a dataset version of
``classify_intent`` made from every upstream *train* row of its 10 intents (the store splits it
60/20/20 by a hash of the input), and a production version ``v1`` of the program that names that
dataset version: ``--demos`` class-balanced demos from its train split. The reference is then what
``check_drift`` resolves (production's dataset, train split; held-out: its test and dev splits).

Live windows of ``--size`` calls are drawn (seeded) from the upstream *test* split, which is in
no dataset: in-distribution windows from the 400 test rows of the 10 intents, shifted windows with
a share (``--shifts``) replaced by test rows of the 67 other intents (a seeded sample of ``--other``
of them). The same windows are judged for both kinds of drift with the check's own functions:

- inputs: each text's novelty (best Jaccard similarity to the train split below the threshold, the
  check's :class:`NoveltyIndex`) is computed once per text, then every window is judged with
  :func:`judge_input` against the held-out novel share;
- outputs: the live labels are the **real predictions of the production version** (Gemma 3 270M,
  llama.cpp, the configured adapter) on every text of both pools, computed once per text and cached
  in ``~/.cache/ratchet/``; every window is judged with :func:`judge_output` against the train
  labels. ``--no-model`` skips output drift.

Windows overlap (100 of 400 texts each): rates are over windows, not independent trials. Two
windows (in-distribution, 50 %) are also written as telemetry and run through ``check_drift``
itself, to show the shortcut gives the check's verdicts. A sensitivity table shows the flag rates
for other similarity thresholds, margins and PSI thresholds (why the defaults are what they are).
Goal: at most 5 % of in-distribution windows flagged; shifted windows flagged.

Data: Banking77 (PolyAI-LDN/task-specific-datasets, CC BY 4.0; Casanueva et al., "Efficient Intent
Detection with Dual Sentence Encoders", NLP4ConvAI 2020, arXiv:2003.04807). No text is written to the
results, only counts and rates.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import random
import tempfile
import time
import typing
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from ratchet.config import Settings
from ratchet.config.settings import DriftSettings
from ratchet.data.datasets import DatasetStore
from ratchet.data.records import ExampleRecord
from ratchet.examples.classify_intent import Intent
from ratchet.monitor.checks import check_drift
from ratchet.monitor.drift import NoveltyIndex, judge_input, judge_output, label_field, load_reference
from ratchet.programs import load_programs
from ratchet.programs.production import ProductionPointers
from ratchet.programs.versions import VersionStore
from ratchet.store.db import StateDB

console = Console(stderr=True)
SIG = "classify_intent"
INTENTS = set(typing.get_args(Intent))
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "banking77"
CACHE = Path(os.environ.get("RATCHET_CACHE_DIR") or Path.home() / ".cache" / "ratchet")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [{"text": row["text"].strip(), "intent": row["category"]} for row in csv.DictReader(fh)]


def build_home(home: Path, train: list[dict[str, str]], demos: int, lm: str, adapter: str) -> tuple[Settings, Any]:
    """A home with a dataset version of the program's train rows and a production version ``v1`` naming it."""
    from ratchet.evaluation.fewshot import fewshot_program

    settings = Settings(home=home)
    registry = load_programs(settings)
    spec = registry.get(SIG)
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    created = store.create(SIG, [ExampleRecord(values=row, signature=SIG, source="banking77") for row in train],
                           source="banking77")
    trainset = store.load(SIG, created.version).to_examples(spec.schema, "train")
    versions = VersionStore(settings.home_dir)
    saved = versions.save(spec, fewshot_program(spec, demos, trainset=trainset), lm=lm, adapter=adapter,
                          dataset_version=created.version, notes=f"{demos} balanced demos (drift validation)")
    ProductionPointers(StateDB.connect(settings), versions).set(SIG, saved.version, actor="benchmark",
                                                                reason="drift validation")
    return settings, registry


def predictions(settings: Settings, registry: Any, texts: list[str]) -> tuple[dict[str, str | None], dict[str, Any]]:
    """The production version's label for every text (cached per text and program fingerprint)."""
    import dspy

    from ratchet.lm import build_lms

    spec = registry.get(SIG)
    versions = VersionStore(settings.home_dir)
    production = ProductionPointers(StateDB.connect(settings), versions).get(SIG)
    fingerprint = versions.get(SIG, production).fingerprint
    cache_path = CACHE / f"drift_validation_predictions-{fingerprint[:16]}.json"
    cached: dict[str, str | None] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    unique = list(dict.fromkeys(texts))
    todo = [t for t in unique if _key(t) not in cached]
    info = {"version": production, "fingerprint": fingerprint[:16], "cached": len(unique) - len(todo),
            "computed": len(todo), "seconds": 0.0, "failures": 0}
    if todo:
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
        bundle = build_lms(settings.lm).prepare()
        bundle.warm_up()
        module = versions.load(spec, production)
        started = time.perf_counter()
        with dspy.context(lm=bundle.task, adapter=bundle.adapter):
            for i, text in enumerate(todo, start=1):
                try:
                    label = module(text=text).intent
                except Exception:  # a failed call: not in telemetry's successful calls
                    label = None
                cached[_key(text)] = label
                if i % 50 == 0 or i == len(todo):
                    console.print(f"  predicted {i}/{len(todo)} ({(time.perf_counter() - started) / i:.2f} s/call)")
                    cache_path.parent.mkdir(parents=True, exist_ok=True)
                    cache_path.write_text(json.dumps(cached))
        info["seconds"] = round(time.perf_counter() - started, 1)
    labels = {t: cached[_key(t)] for t in texts}
    info["failures"] = sum(1 for label in labels.values() if label is None)
    return labels, info


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def windows(same: list[str], other: list[str], shares: list[float], count: int, size: int, seed: int
            ) -> dict[float, list[list[str]]]:
    """``count`` seeded windows of ``size`` texts per share of unseen intents (no text twice in a window)."""
    rng = random.Random(seed)
    out = {}
    for share in shares:
        k = round(share * size)
        out[share] = [rng.sample(other, k) + rng.sample(same, size - k) for _ in range(count)]
    return out


def judge_windows(drawn: dict[float, list[list[str]]], novel: dict[str, bool], reference_novel: tuple[int, int],
                  labels: dict[str, str | None] | None, train_labels: list[str], choices: tuple[str, ...],
                  drift: DriftSettings) -> list[dict[str, Any]]:
    """Flag rates per share of unseen intents, each window judged with the check's functions."""
    rows = []
    for share, texts_per_window in drawn.items():
        inputs, naive, outputs, either, shares, psis = [], [], [], [], [], []
        for texts in texts_per_window:
            verdict = judge_input(sum(novel[t] for t in texts), len(texts), *reference_novel, drift)
            inputs.append(verdict.flagged)
            naive.append(verdict.live_share > verdict.reference_share)
            shares.append(verdict.live_share)
            out_flag = False
            if labels is not None:
                live = [label for t in texts if (label := labels[t]) is not None]
                if len(live) >= drift.min_samples:
                    out = judge_output("intent", choices, train_labels, live, drift)
                    out_flag = out.flagged
                    psis.append(out.psi)
                    outputs.append(out_flag)
            either.append(verdict.flagged or out_flag)
        rows.append({"unseen_share": share, "windows": len(texts_per_window),
                     "input_flag_rate": round(float(np.mean(inputs)), 4),
                     "input_flag_rate_raw_comparison": round(float(np.mean(naive)), 4),
                     "output_flag_rate": round(float(np.mean(outputs)), 4) if outputs else None,
                     "output_windows": len(outputs),
                     "any_flag_rate": round(float(np.mean(either)), 4),
                     "mean_live_novel_share": round(float(np.mean(shares)), 4),
                     "mean_psi": round(float(np.mean(psis)), 4) if psis else None,
                     "psi_p95": round(float(np.percentile(psis, 95)), 4) if psis else None,
                     "psi_p99": round(float(np.percentile(psis, 99)), 4) if psis else None,
                     "psi_max": round(float(np.max(psis)), 4) if psis else None})
    return rows


def sensitivity(reference: Any, spec: Any, settings: Settings, pools: dict[str, list[str]],
                drawn: dict[float, list[list[str]]], labels: dict[str, str | None] | None,
                train_labels: list[str], choices: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Flag rates of the in-distribution and the smallest shifted level under other thresholds."""
    levels = list(drawn)
    out: dict[str, list[dict[str, Any]]] = {"input": [], "output": []}
    everything = sorted({t for pool in pools.values() for t in pool})
    for threshold in (0.25, 0.3, 0.35, 0.4, 0.45):
        index = NoveltyIndex(spec.schema, reference.train, threshold, settings.data)
        novel = dict(zip(everything, (index.similarities([{"text": t} for t in everything]) < threshold).tolist(),
                         strict=True))
        ref = (index.novel(reference.heldout), len(reference.heldout))
        for margin in (0.0, 0.05, 0.10):
            drift = DriftSettings(similarity_threshold=threshold, novelty_margin=margin)
            rates = {f"flag_rate_{share:g}": round(float(np.mean([judge_input(
                sum(novel[t] for t in texts), len(texts), *ref, drift).flagged for texts in drawn[share]])), 4)
                for share in levels}
            out["input"].append({"similarity_threshold": threshold, "margin": margin,
                                 "reference_novel_share": round(ref[0] / ref[1], 4), **rates})
    if labels is not None:
        judged = {share: [judge_output("intent", choices, train_labels,
                                       [label for t in texts if (label := labels[t]) is not None], DriftSettings())
                          for texts in drawn[share]] for share in levels}
        for psi_threshold in (0.1, 0.25, 0.35, 0.4, 0.5):
            for with_test in (False, True):
                rates = {f"flag_rate_{share:g}": round(float(np.mean([
                    o.psi > psi_threshold and (o.p_value < 0.05 or not with_test) for o in judged[share]])), 4)
                    for share in levels}
                out["output"].append({"psi_threshold": psi_threshold, "g_test": with_test, **rates})
    return out


def program_reference(drawn: dict[float, list[list[str]]], labels: dict[str, str | None], heldout: list[str],
                      choices: tuple[str, ...]) -> list[dict[str, Any]]:
    """Output flag rates if the reference were the production version's own answers on the held-out inputs
    (what the cycle could record when it evaluates a candidate) instead of the training labels."""
    reference = [label for t in heldout if (label := labels[t]) is not None]
    rows = []
    for psi_threshold in (0.1, 0.25):
        drift = DriftSettings(psi_threshold=psi_threshold)
        for share, texts_per_window in drawn.items():
            judged = [judge_output("intent", choices, reference, [labels[t] for t in texts if labels[t] is not None],
                                   drift) for texts in texts_per_window]
            rows.append({"psi_threshold": psi_threshold, "unseen_share": share,
                         "output_flag_rate": round(float(np.mean([o.flagged for o in judged])), 4),
                         "mean_psi": round(float(np.mean([o.psi for o in judged])), 4)})
    return rows


def end_to_end(settings: Settings, registry: Any, same: list[str], other: list[str], labels: dict[str, str | None]
               | None, size: int, seed: int) -> list[dict[str, Any]]:
    """Two windows written as telemetry and judged by ``check_drift`` itself."""
    rng = random.Random(seed + 1)
    results = []
    for share in (0.0, 0.5):
        k = round(share * size)
        texts = rng.sample(other, k) + rng.sample(same, size - k)
        now_ms = int(time.time() * 1000)
        directory = settings.home_dir / "telemetry"
        directory.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"record": "interaction", "module_name": "Predict", "module_version": "v1",
                             "signature": SIG, "input": {"text": t},
                             "output": {"intent": labels[t]} if labels else {},
                             "timestamp_ms": now_ms - i, "success": True, "arm": "baseline"})
                 for i, t in enumerate(texts) if labels is None or labels[t] is not None]
        (directory / "interactions.jsonl").write_text("\n".join(lines) + "\n")
        summary = check_drift(settings, registry=registry).summary["signatures"][SIG]
        results.append({"unseen_share": share, "status": summary["status"], "flagged": summary["flagged"],
                        "reference": summary["reference"]["description"],
                        "live_novel_share": summary["input"]["live_novel_share"],
                        "reference_novel_share": summary["input"]["reference_novel_share"],
                        "excess_lower_bound": summary["input"]["excess_lower_bound"],
                        "psi": summary["output"]["psi"] if labels and summary["output"] else None})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--banking77", type=Path, default=SHARED, help="upstream train.csv and test.csv")
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--size", type=int, default=100, help="calls per window (the default min_samples)")
    parser.add_argument("--shifts", default="0.1,0.3,0.5,1.0", help="shares of the window from unseen intents")
    parser.add_argument("--other", type=int, default=600, help="unseen-intent test rows in the pool")
    parser.add_argument("--demos", type=int, default=40, help="demos of the production version")
    parser.add_argument("--no-model", action="store_true", help="inputs only: no predictions, no output drift")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/drift_validation.json"))
    args = parser.parse_args()
    started = time.time()

    train_rows = [r for r in read_csv(args.banking77 / "train.csv") if r["intent"] in INTENTS]
    test_rows = read_csv(args.banking77 / "test.csv")
    same = [r["text"] for r in test_rows if r["intent"] in INTENTS]
    unseen = [r for r in test_rows if r["intent"] not in INTENTS]
    other = [r["text"] for r in random.Random(args.seed).sample(unseen, min(args.other, len(unseen)))]
    with tempfile.TemporaryDirectory() as tmp:
        settings, registry = build_home(Path(tmp) / "home", train_rows, args.demos, "local", "auto")
        spec = registry.get(SIG)
        reference, notes = load_reference(spec, versions=VersionStore(settings.home_dir),
                                          datasets=DatasetStore(settings.home_dir, settings.data, registry=registry))
        assert reference is not None and reference.kind == "production", notes
        drift = settings.monitor.drift
        index = NoveltyIndex(spec.schema, reference.train, drift.similarity_threshold, settings.data)
        everything = sorted(set(same) | set(other))
        similarity = dict(zip(everything, index.similarities([{"text": t} for t in everything]).tolist(),
                              strict=True))
        novel = {t: s < drift.similarity_threshold for t, s in similarity.items()}
        reference_novel = (index.novel(reference.heldout), len(reference.heldout))
        _, choices, _ = label_field(spec)
        train_labels = [str(v["intent"]) for v in reference.train]
        heldout = [str(v["text"]) for v in reference.heldout]
        labels, model = (None, None) if args.no_model else predictions(settings, registry, everything + heldout)
        shares = [0.0, *[float(s) for s in args.shifts.split(",")]]
        drawn = windows(same, other, shares, args.windows, args.size, args.seed)
        rows = judge_windows(drawn, novel, reference_novel, labels, train_labels, choices, drift)
        checked = end_to_end(settings, registry, same, other, labels, args.size, args.seed)
        sens = sensitivity(reference, spec, settings, {"same": same, "other": other}, drawn, labels, train_labels,
                           choices)
        alternative = None if labels is None else program_reference(drawn, labels, heldout, choices)
        if labels is not None:
            truth = {r["text"]: r["intent"] for r in test_rows if r["intent"] in INTENTS}
            other_labels = [labels[t] for t in other if labels[t] is not None]
            model["unseen_intents_predicted_as"] = dict(sorted(
                ((label, other_labels.count(label)) for label in set(other_labels)), key=lambda kv: -kv[1])[:5])
            model["accuracy_on_same_intent_test_rows"] = round(float(np.mean([labels[t] == truth[t] for t in same])), 4)
    result = {
        "machine": {"node": platform.node(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "system": platform.platform()},
        "command": "benchmarks/drift_validation.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("banking77", "out", "no_model"))
            + (" --no-model" if args.no_model else ""),
        "settings": drift.model_dump(),
        "reference": {**reference.to_dict(), "novel_share": round(reference_novel[0] / reference_novel[1], 4)},
        "pools": {"same_intent_test_rows": len(same), "unseen_intent_test_rows": len(other),
                  "unseen_intents": len({r["intent"] for r in unseen})},
        "text_novel_share": {"same": round(float(np.mean([novel[t] for t in same])), 4),
                             "unseen": round(float(np.mean([novel[t] for t in other])), 4)},
        "model": model,
        "windows": rows,
        "check_drift_end_to_end": checked,
        "sensitivity": sens,
        "output_reference_program_answers": alternative,
        "seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    show(result)


def show(result: dict[str, Any]) -> None:
    table = Table(title="drift flag rates by share of traffic from unseen intents")
    for column in ("unseen share", "windows", "inputs flagged", "outputs flagged", "either", "novel share", "PSI"):
        table.add_column(column, justify="right")
    for row in result["windows"]:
        out = row["output_flag_rate"]
        table.add_row(f"{row['unseen_share']:.0%}", str(row["windows"]), f"{row['input_flag_rate']:.1%}",
                      "–" if out is None else f"{out:.1%}", f"{row['any_flag_rate']:.1%}",
                      f"{row['mean_live_novel_share']:.1%}",
                      "–" if row["mean_psi"] is None else f"{row['mean_psi']:.3f}")
    console.print(table)
    console.print(f"reference: {result['reference']['description']}; held-out novel share "
                  f"{result['reference']['novel_share']:.1%}; model: {result['model']}")
    console.print(f"check_drift end to end: {result['check_drift_end_to_end']}")


if __name__ == "__main__":
    main()
