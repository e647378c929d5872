"""Speed of each llama.cpp build variant and extra-buffers choice on this machine, side by side.

    python benchmarks/llama_builds.py [--rounds 5] [--reps 3] [--threads 0] [--out benchmarks/results/llama_builds.json]

Every llama-cpp-python wheel `scripts/llama_wheel.sh` left in ~/.cache/ratchet/wheels/ (build one
with `bash scripts/llama_wheel.sh portable|native`) is unpacked into a temporary directory; each
(wheel, extra_buffers on|off) configuration then runs in its own child process with that copy
first on its path. Configurations take turns round by round (interleaved, so machine noise
falls on all of them alike); each round loads the bundled Gemma 3 270M Q4_K_M and measures:

- load: model load time (weights repacked here when extra buffers are on);
- prefill: tokens per second evaluating a ~1,000-token prompt (a 40-demo classification
  prompt, the shape Ratchet's optimized programs have), cache cleared before each;
- decode: tokens per second generating 32 tokens after it.

Reports medians over rounds and the ratio of each configuration to portable + extra buffers on
(Ratchet's default on CPUs without AMX).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
WHEELHOUSE = Path(os.environ.get("RATCHET_WHEELHOUSE") or Path.home() / ".cache" / "ratchet" / "wheels")


def _child(model_path: str, extra_buffers: bool, reps: int, threads: int) -> None:
    """Runs in the child: one load, then ``reps`` prefill+decode measurements; prints one JSON line."""
    from ratchet.lm.llamacpp_native import new_llama, system_info

    started = time.perf_counter()
    llama = new_llama(model_path, extra_buffers=extra_buffers, n_ctx=2048, n_batch=512,
                      n_threads=threads or os.cpu_count(), seed=0, verbose=False)
    load_s = time.perf_counter() - started
    demos = "".join(f"Text: example message number {i} about a card payment\nIntent: intent_{i % 10}\n\n"
                    for i in range(40))
    prompt = llama.tokenize((demos + "Text: where is my new card?\nIntent:").encode(), add_bos=True)
    prefill, decode = [], []
    for _ in range(reps):
        llama.reset()
        started = time.perf_counter()
        llama.eval(prompt)
        prefill.append(len(prompt) / (time.perf_counter() - started))
        started = time.perf_counter()
        generated = 0
        for token in llama.generate(prompt, temp=0.0):  # the prompt is cached: decoding only
            generated += 1
            if generated >= 32 or token == llama.token_eos():
                break
        decode.append(generated / (time.perf_counter() - started))
    print(json.dumps({"load_s": load_s, "prefill_tps": statistics.median(prefill),
                      "decode_tps": statistics.median(decode), "prompt_tokens": len(prompt),
                      "system_info": system_info()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3, help="prefill+decode measurements per round")
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/llama_builds.json"))
    args = parser.parse_args()

    from ratchet.lm.llamacpp_native import cpu_info
    from ratchet.lm.local_model import bundled_weights

    weights = bundled_weights()
    wheels = sorted(WHEELHOUSE.glob("llama-cpp-python-*/llama_cpp_python-*.whl"))
    if not wheels:
        sys.exit(f"no llama-cpp-python wheels under {WHEELHOUSE}: run `bash scripts/llama_wheel.sh portable`")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for wheel in wheels:
            variant = wheel.parent.name.split("-", 4)[-1]  # llama-cpp-python-<version>-<variant>
            target = Path(tmp) / variant
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
            for lib in (target / "llama_cpp" / "lib").glob("*"):
                lib.chmod(0o755)
            paths[variant] = target
        configs = [(variant, extra) for variant in paths for extra in (True, False)]
        runs: dict[tuple[str, bool], list[dict]] = {c: [] for c in configs}
        for round_ in range(args.rounds):
            for variant, extra in configs:
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(paths[variant]), *sys.path])}
                done = subprocess.run([sys.executable, __file__, "--child", str(weights.path), str(int(extra)),
                                       str(args.reps), str(args.threads)], env=env, capture_output=True, text=True,
                                      check=False, timeout=600)
                if done.returncode != 0:
                    sys.exit(f"{variant} extra_buffers={extra} failed ({done.returncode}): {done.stderr[-2000:]}")
                runs[(variant, extra)].append(json.loads(done.stdout.strip().splitlines()[-1]))
            console.print(f"round {round_ + 1}/{args.rounds} done")

    rows = []
    for (variant, extra), results in runs.items():
        rows.append({"variant": variant, "extra_buffers": extra,
                     "load_s": statistics.median(r["load_s"] for r in results),
                     "prefill_tps": statistics.median(r["prefill_tps"] for r in results),
                     "decode_tps": statistics.median(r["decode_tps"] for r in results),
                     "prompt_tokens": results[0]["prompt_tokens"], "system_info": results[0]["system_info"]})
    reference = next((r for r in rows if r["variant"].startswith("portable") and r["extra_buffers"]), rows[0])
    for row in rows:
        row["prefill_vs_default"] = row["prefill_tps"] / reference["prefill_tps"]
        row["decode_vs_default"] = row["decode_tps"] / reference["decode_tps"]

    table = Table(title="llama.cpp build × extra buffers (medians)", title_justify="left")
    for column in ("build", "extra buffers", "load s", "prefill tok/s", "decode tok/s", "prefill ×", "decode ×"):
        table.add_column(column, justify="left" if column == "build" else "right")
    for row in rows:
        table.add_row(row["variant"], "on" if row["extra_buffers"] else "off", f"{row['load_s']:.2f}",
                      f"{row['prefill_tps']:.0f}", f"{row['decode_tps']:.1f}", f"{row['prefill_vs_default']:.2f}",
                      f"{row['decode_vs_default']:.2f}")
    Console().print(table)
    cpu = cpu_info()
    result = {
        "command": "python benchmarks/llama_builds.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.node()} · {cpu.summary()} · {os.cpu_count()} CPUs · Python {platform.python_version()}",
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rounds": args.rounds, "reps": args.reps, "threads": args.threads or os.cpu_count(),
        "model": weights.model_id, "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], bool(int(sys.argv[3])), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
