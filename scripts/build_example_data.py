"""Rebuild the bundled example data from the upstream copies in ../shared/datasets.

    python scripts/build_example_data.py [SHARED_DATASETS_DIR]

Banking77 → classify_intent (10 intents, upstream train/test splits kept);
Restaurant-8k → extract_booking (slot values cut out of the labelled spans).
The readers here are shared with ``benchmarks/user_tasks/build_data.py``.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

SLOTS = ["people", "date", "time", "first_name", "last_name"]
OUT = Path(__file__).resolve().parents[1] / "src" / "ratchet" / "examples" / "data"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as JSON lines (UTF-8, one object a line) and say how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"{path.parent.name}/{path.name}: {len(rows)} examples")


def banking77(src: Path, out: Path, intents: list[str]) -> None:
    """Banking77's upstream train and test rows of ``intents`` as ``{"text", "intent"}`` lines under ``out``."""
    for split in ("train", "test"):
        with (src / f"{split}.csv").open(encoding="utf-8") as fh:
            rows = [{"text": r["text"].strip(), "intent": r["category"]}
                    for r in csv.DictReader(fh) if r["category"] in intents]
        write_jsonl(out / f"{split}.jsonl", rows)


def restaurant8k_spans(src: Path, split: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Each Restaurant-8k row of ``split``: its text and the first non-empty labelled value of each slot."""
    for item in json.loads((src / f"{split}.json").read_text(encoding="utf-8")):
        text = item["userInput"]["text"]
        spans: dict[str, str] = {}
        for label in item.get("labels", []):
            span = label["valueSpan"]
            value = text[span.get("startIndex", 0):span["endIndex"]].strip()
            if value:
                spans.setdefault(label["slot"], value)
        yield text.strip(), spans


def restaurant(src: Path) -> None:
    for split in ("train", "test"):
        rows = [{"text": text, **{slot: spans.get(slot) for slot in SLOTS}}
                for text, spans in restaurant8k_spans(src, split)]
        write_jsonl(OUT / "restaurant8k" / f"{split}.jsonl", rows)


if __name__ == "__main__":
    import typing

    from ratchet.examples.classify_intent import Intent

    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "datasets"
    banking77(shared / "banking77", OUT / "banking77", list(typing.get_args(Intent)))
    restaurant(shared / "restaurant8k")
