"""Build the two user tasks' data from the upstream copies in /work/shared/datasets (see ATTRIBUTION.md).

    python benchmarks/user_tasks/build_data.py [SHARED_DATASETS_DIR]

Banking77 → ``route_account_request``: 10 intents none of which ``classify_intent`` knows, every upstream train
and test row of them. Restaurant-8k → ``book_table``: a different signature from ``extract_booking``
(``party_size: int | None``, ``day``, ``time``, ``name``), a seeded sample of 1,500 train and 600 test rows;
rows whose party size is not a single number ("5 adults and 1 child") are left out.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from build_example_data import banking77, restaurant8k_spans, write_jsonl

OUT = Path(__file__).resolve().parent / "data"
INTENTS = ["card_linking", "change_pin", "automatic_top_up", "fiat_currency_support", "visa_or_mastercard",
           "getting_spare_card", "receiving_money", "verify_my_identity", "country_support",
           "declined_card_payment"]
NUMBERS = {w: i for i, w in enumerate([
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}
SIZES = {"train": 1500, "test": 600}


def party_size(span: str) -> int | None:
    """The number of people in a span such as "9 people" or "four of us"; None when it is not one number."""
    found = re.findall(r"\d+|[a-z]+", span.casefold())
    values = [int(w) if w.isdigit() else NUMBERS[w] for w in found if w.isdigit() or w in NUMBERS]
    return values[0] if len(values) == 1 else None


def restaurant(src: Path) -> None:
    for split in ("train", "test"):
        rows = []
        for text, spans in restaurant8k_spans(src, split):
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
    banking77(shared / "banking77", OUT / "banking77_other10", INTENTS)
    restaurant(shared / "restaurant8k")
