"""Rebuild the bundled example data from the upstream copies in ../shared/datasets.

    python scripts/build_example_data.py [SHARED_DATASETS_DIR]

Banking77 → classify_intent (10 intents, upstream train/test splits kept);
Restaurant-8k → extract_booking (slot values cut out of the labelled spans).
"""

from __future__ import annotations

import csv
import json
import sys
import typing
from pathlib import Path

from ratchet.examples.classify_intent import Intent

INTENTS = list(typing.get_args(Intent))
SLOTS = ["people", "date", "time", "first_name", "last_name"]
OUT = Path(__file__).resolve().parents[1] / "src" / "ratchet" / "examples" / "data"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{path.relative_to(OUT.parents[3])}: {len(rows)} examples")


def banking(src: Path) -> None:
    for split in ("train", "test"):
        with (src / f"{split}.csv").open(encoding="utf-8") as fh:
            rows = [{"text": r["text"].strip(), "intent": r["category"]}
                    for r in csv.DictReader(fh) if r["category"] in INTENTS]
        write_jsonl(OUT / "banking77" / f"{split}.jsonl", rows)


def restaurant(src: Path) -> None:
    for split in ("train", "test"):
        items = json.loads((src / f"{split}.json").read_text(encoding="utf-8"))
        rows = []
        for item in items:
            text = item["userInput"]["text"]
            row: dict[str, str | None] = {"text": text.strip(), **dict.fromkeys(SLOTS)}
            for label in item.get("labels", []):
                span = label["valueSpan"]
                value = text[span.get("startIndex", 0):span["endIndex"]].strip()
                if label["slot"] in SLOTS and value and row[label["slot"]] is None:
                    row[label["slot"]] = value
            rows.append(row)
        write_jsonl(OUT / "restaurant8k" / f"{split}.jsonl", rows)


if __name__ == "__main__":
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "datasets"
    banking(shared / "banking77")
    restaurant(shared / "restaurant8k")
