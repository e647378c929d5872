"""How long ``ratchet backup``, ``restore --verify-only`` and ``restore`` take for a home with many counter rows.

    python benchmarks/backup_restore.py [--rows 10000] [--repeats 3] [--postgres URL]
                                        [--out benchmarks/results/backup_restore.json]

The state database gets ``--rows`` rows in ``arm_outcomes`` (per-minute counters, the biggest table of a
busy home) and a tenth as many in ``request_index`` and ``feedback``; the home itself is empty otherwise.
SQLite always; PostgreSQL too with ``--postgres`` (a URL whose ``search_path`` names an empty schema; the
restore goes into a second, new schema next to it, dropped afterwards). Each step is timed end to end
(the fastest of ``--repeats``). Runs against whichever Ratchet is importable, so the same script measures
the data-only format and the pg_dump/SQLite-file format that came before it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from ratchet.config import Settings
from ratchet.ops.backup import create_backup, restore_backup, verify_backup
from ratchet.store.db import StateDB
from ratchet.store.tables import arm_outcomes, feedback, request_index

console = Console(stderr=True)
os.environ.setdefault("RATCHET_BACKUP_KEY", secrets.token_hex(32))


def fill(url: str, rows: int) -> None:
    now = time.time()
    with StateDB(url) as db, db.begin(write=True) as conn:
        conn.execute(insert(arm_outcomes), [
            {"signature": "classify_intent", "version": f"v{i % 3}", "arm": "baseline", "experiment_id": "",
             "minute": 29_000_000 + i, "requests": 10 + i % 7, "errors": i % 2, "latency_sum_s": 1.5,
             "latency_sumsq": 0.3, "tokens_in": 400, "tokens_out": 20, "cost_usd": 0.001} for i in range(rows)])
        ids = [f"req-{i:08d}" for i in range(rows // 10)]
        conn.execute(insert(request_index), [{"request_id": r, "signature": "classify_intent", "version": "v1",
                                              "arm": "baseline", "created_at": now} for r in ids])
        conn.execute(insert(feedback), [{"request_id": r, "score": 0.5, "correction": '{"intent": "card_arrival"}',
                                         "created_at": now} for r in ids])


def _kwargs(function: Any, **wanted: Any) -> dict[str, Any]:
    """Only the keyword arguments ``function`` takes (the format before signatures had none of them)."""
    names = inspect.signature(function).parameters
    return {key: value for key, value in wanted.items() if key in names}


def timed(step: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best


def run(label: str, source_url: str, target_url_for: Any, rows: int, repeats: int, work: Path) -> dict[str, Any]:
    home = work / f"{label}-home"
    home.mkdir()
    fill(source_url, rows)
    settings = Settings(home=home, database_url=source_url)
    archive = work / f"{label}.tar.gz"
    key = os.environ["RATCHET_BACKUP_KEY"]
    backup_s = timed(lambda: create_backup(settings, archive), repeats)
    verify_s = timed(lambda: verify_backup(archive, **_kwargs(verify_backup, key=key)), repeats)
    restores = [0]

    def restore() -> None:
        restores[0] += 1
        target_home = work / f"{label}-restored-{restores[0]}"
        target = Settings(home=target_home, database_url=target_url_for(restores[0], target_home))
        restore_backup(target, archive, home=target_home, **_kwargs(restore_backup, allow_unsigned=False))

    restore_s = timed(restore, repeats)
    result = {"rows": rows, "backup_s": round(backup_s, 3), "verify_s": round(verify_s, 3),
              "restore_s": round(restore_s, 3), "archive_bytes": archive.stat().st_size}
    console.print(f"{label}: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL whose search_path is an empty schema")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "backup_restore.json")
    args = parser.parse_args()
    import ratchet

    out: dict[str, Any] = {"ratchet": str(Path(ratchet.__file__).parent), "machine": platform.machine(),
                           "cpus": os.cpu_count(), "python": sys.version.split()[0], "results": {}}
    work = Path(tempfile.mkdtemp(prefix="ratchet-backup-bench-"))
    try:
        out["results"]["sqlite"] = run("sqlite", f"sqlite:///{work / 'source.db'}",
                                       lambda n, home: f"sqlite:///{home / 'ratchet.db'}", args.rows, args.repeats,
                                       work)
        if args.postgres:
            out["results"]["postgresql"] = _postgres(args.postgres, args.rows, args.repeats, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


def _postgres(url: str, rows: int, repeats: int, work: Path) -> dict[str, Any]:
    schemas: list[str] = []
    base = make_url(url)

    def target(n: int, _home: Path) -> str:
        schema = f"bench_{secrets.token_hex(4)}_{n}"
        with StateDB(url) as db, db.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        return base.set(query={"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    try:
        return run("postgresql", url, target, rows, repeats, work)
    finally:
        with StateDB(url) as db, db.engine.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
