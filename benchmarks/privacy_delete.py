"""How long a right-to-deletion request takes on a home with N telemetry records (SQLite state database).

    python benchmarks/privacy_delete.py [--records 100000] [--users 1000] [--files 10] [--dir DIR]
                                        [--out benchmarks/results/privacy_delete.json]

Builds a home whose telemetry holds ``--records`` interaction records of ``--users`` users (round robin, each with
a pseudonym), split over ``--files`` files: all but the last rotated and gzipped, the last the active file; every
record is also in the request index, every tenth has a feedback row. Then ``delete_user_data`` removes one user
(``records / users`` records) and the script reports the time of each step.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from ratchet.config import Settings
from ratchet.privacy import delete_user_data
from ratchet.store.db import StateDB
from ratchet.store.pseudonyms import user_pseudonym
from ratchet.store.tables import feedback, request_index
from ratchet.telemetry.records import InteractionLog

console = Console(stderr=True)


def _build(settings: Settings, records: int, users: int, files: int) -> None:
    directory = settings.home_dir / "telemetry"
    directory.mkdir(parents=True, mode=0o700)
    pseudonyms = [user_pseudonym(settings, f"user-{u}") for u in range(users)]
    rows, feedback_rows, chunk = [], [], -(-records // files)
    for f in range(files):
        lines = []
        for i in range(f * chunk, min(records, (f + 1) * chunk)):
            rid = f"req-{i:08d}"
            lines.append(json.dumps(InteractionLog(
                module_name="Predict", module_version="v3", signature="classify_intent",
                input={"text": f"message {i} about my card that never arrived, please help"},
                output={"intent": "card_arrival"}, timestamp_ms=1_700_000_000_000 + i, success=True, latency_ms=80.0,
                tokens_in=120, tokens_out=3, model="gemma", request_id=rid, arm="baseline",
                user_pseudonym=pseudonyms[i % users]).to_dict(), separators=(",", ":")))
            rows.append({"request_id": rid, "signature": "classify_intent", "version": "v3", "arm": "baseline",
                         "created_at": time.time(), "user_pseudonym": pseudonyms[i % users]})
            if i % 10 == 0:
                feedback_rows.append({"request_id": rid, "score": 1.0, "correction": None, "created_at": time.time()})
        data = ("\n".join(lines) + "\n").encode()
        if f == files - 1:
            (directory / "interactions.jsonl").write_bytes(data)
        else:
            name = f"interactions-20261201T{f:06d}-1-{f}.jsonl.gz"
            (directory / name).write_bytes(gzip.compress(data, compresslevel=6))
    with StateDB.connect(settings) as db, db.begin(write=True) as conn:
        conn.execute(request_index.insert(), rows)
        conn.execute(feedback.insert(), feedback_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary home goes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/privacy_delete.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        settings = Settings(home=Path(tmp) / "home")
        started = time.perf_counter()
        _build(settings, args.records, args.users, args.files)
        console.print(f"home built in {time.perf_counter() - started:.1f} s")
        sizes = sum(p.stat().st_size for p in (settings.home_dir / "telemetry").iterdir())
        report = delete_user_data(settings, "user-0")
    steps = report.to_dict()["steps"]
    result = {"records": args.records, "users": args.users, "files": args.files, "telemetry_bytes": sizes,
              "seconds": round(report.seconds, 3), "status": report.status,
              "removed": {s["step"]: s["count"] for s in steps},
              "step_seconds": {s["step"]: s["seconds"] for s in steps},
              "python": sys.version.split()[0], "machine": platform.machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print_json(json.dumps(result))


if __name__ == "__main__":
    main()
