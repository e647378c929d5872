"""Build the two user tasks' data from the upstream copies in /work/shared/datasets (see ATTRIBUTION.md).

    python benchmarks/user_tasks/build_data.py [SHARED_DATASETS_DIR]

Banking77 → ``route_account_request``: 10 intents none of which ``classify_intent`` knows, every upstream train
and test row of them. Restaurant-8k → ``book_table``: a different signature from ``extract_booking``
(``party_size: int | None``, ``day``, ``time``, ``name``), a seeded sample of 1,500 train and 600 test rows;
rows whose party size is not a single number ("5 adults and 1 child") are left out.
"""

from __future__ import annotations

import csv
import json
import random
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data"
INTENTS = ["card_linking", "change_pin", "automatic_top_up", "fiat_currency_support", "visa_or_mastercard",
           "getting_spare_card", "receiving_money", "verify_my_identity", "country_support",
           "declined_card_payment"]
NUMBERS = {w: i for i, w in enumerate([
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}
SIZES = {"train": 1500, "test": 600}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"{path.name} ({path.parent.name}): {len(rows)} examples")


def party_size(span: str) -> int | None:
    """The number of people in a span such as "9 people" or "four of us"; None when it is not one number."""
    found = re.findall(r"\d+|[a-z]+", span.casefold())
    values = [int(w) if w.isdigit() else NUMBERS[w] for w in found if w.isdigit() or w in NUMBERS]
    return values[0] if len(values) == 1 else None


def banking(src: Path) -> None:
    for split in ("train", "test"):
        with (src / f"{split}.csv").open(encoding="utf-8") as fh:
            rows = [{"text": r["text"].strip(), "intent": r["category"]}
                    for r in csv.DictReader(fh) if r["category"] in INTENTS]
        write_jsonl(OUT / "banking77_other10" / f"{split}.jsonl", rows)


def restaurant(src: Path) -> None:
    for split in ("train", "test"):
        rows = []
        for item in json.loads((src / f"{split}.json").read_text(encoding="utf-8")):
            text = item["userInput"]["text"].strip()
            spans: dict[str, str] = {}
            for label in item.get("labels", []):
                span = label["valueSpan"]
                value = item["userInput"]["text"][span.get("startIndex", 0):span["endIndex"]].strip()
                spans.setdefault(label["slot"], value)
            size = party_size(spans["people"]) if "people" in spans else None
            if "people" in spans and size is None:
                continue
            name = " ".join(spans[s] for s in ("first_name", "last_name") if s in spans) or None
            rows.append({"text": text, "party_size": size, "day": spans.get("date"), "time": spans.get("time"),
                         "name": name})
        random.Random(0).shuffle(rows)
        write_jsonl(OUT / "restaurant8k_table" / f"{split}.jsonl", rows[: SIZES[split]])


if __name__ == "__main__":
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/datasets")
    banking(shared / "banking77")
    restaurant(shared / "restaurant8k")
