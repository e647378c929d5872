"""The human flywheel on real data: a simulated week of Banking77 traffic, triage, annotation, phase 2, a cycle.

    .venv/bin/python benchmarks/flywheel_proof.py [--requests N] [--home DIR] [--json]
                                                  [--concurrency 2] [--double-share 0.25] [--error-rate 0.1]
                                                  [--cycle-seed 0] [--no-cycles] [--out FILE]

About 20 minutes on 2 busy cores with the default 400 requests: serving takes under a minute, the two
cycles (MIPROv2 on the embedded model) most of the rest.

Every step runs the real thing end to end on the embedded model (llama.cpp, no API key):

1. ``ratchet init`` in a fresh workspace (``--home``, default a temporary directory): the bundled
   ``classify_intent`` program (10 Banking77 intents), production = the zero-shot ``base`` version the
   quickstart starts from, every call sampled into telemetry (as the quickstart does).
2. A real ``ratchet serve`` process answers N Banking77 messages over HTTP (an API key only if the server
   asks for one): texts of the upstream *test* split of the program's 10 intents, never its training data,
   in a seeded order. "A week" is the current ISO week, its traffic compressed into minutes.
3. Feedback from the gold labels: ``POST /v1/feedback`` with the issued request id, score 1 when the
   predicted intent is the gold one, else 0 — no correction (correcting is the annotators' job).
4. Phase 1, ``ratchet flywheel run --week <this week> --double-share S --json``: the clusters are scored
   against the truth — per cluster, the purity of its members' (gold, predicted) confusion pair and of the
   gold label alone, weighted by size; the number and sizes of clusters; the share of the failures that were clustered;
   and the same purities for random clusters of the same sizes (what the clustering adds over chance).
5. **SIMULATED ANNOTATORS — USED ONLY IN THIS PROOF.** Nobody may mistake them for a feature: they answer
   from the gold labels the benchmark kept aside. ``sim-annotator-1`` works the queue through the annotation
   API (:func:`ratchet.annotate.next_task` / :func:`ratchet.annotate.submit`, what ``ratchet annotate
   next|submit`` run): it accepts when the model's output is the gold intent, else corrects ``intent=<gold>``.
   ``sim-annotator-2`` then takes the tasks that need a second annotator (``--double-share`` of them) and
   answers the same way except that it gives a wrong intent at a fixed rate (``--error-rate``: every tenth
   answer by default), so Cohen's kappa in ``ratchet annotate stats`` measures something.
6. Phase 2 and the next cycle, measured with a control: the workspace after annotation is copied twice.
   In copy A ``ratchet flywheel run --week W --continue`` imports the week's annotations (corrections into
   the training dataset, a stable share of accepted and corrected cases into the golden set instead), then
   ``ratchet cycle`` runs with the quickstart's arguments (MIPROv2, 10 trials, seed 0 or ``--cycle-seed``, 80
   synthetic examples; the telemetry target is N instead of 800); in copy B the same
   cycle runs without phase 2. Reported for each: the candidate's held-out score against production from
   the cycle's own paired evaluation, and — on copy A's golden set, so both on the same examples — the
   scores of production, candidate A and candidate B with intervals (``ratchet eval-regression`` output is
   recorded too). Production's golden score is ~0 by construction: the golden cases are its failures.
   Skipped with a note when this checkout has no ``flywheel run --continue`` yet.

The figures go to ``benchmarks/results/flywheel_proof.json`` (``--out``) and a summary table to stdout
(``--json``: the whole result as JSON instead). Banking77: PolyAI, CC BY 4.0 (Casanueva et al. 2020,
arXiv:2003.04807); see ``src/ratchet/examples/data/ATTRIBUTION.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "src" / "ratchet" / "examples" / "data" / "banking77"
UPSTREAM_TEST = Path("/work/shared/datasets/banking77/test.csv")
SIG = "classify_intent"
LABEL = "intent"
ANNOTATOR_1 = "sim-annotator-1"
ANNOTATOR_2 = "sim-annotator-2"


def cycle_args(requests: int, seed: int = 0) -> list[str]:
    """The quickstart's cycle (scripts/quickstart.sh, step 4: MIPROv2, the default optimizer, 10 trials, seed 0,
    80 synthetic examples), its telemetry target the week's requests instead of the quickstart's 800: a cycle
    stops when it collects less than half its targets, and without corrections in the feedback only the
    week's right answers are labelled telemetry (about two thirds of the requests)."""
    return ["cycle", "--signatures", SIG, "--git-target", "0", "--telemetry-target", str(requests),
            "--synthetic-target", "80", "--trials", "10", "--seed", str(seed), "--json"]
# The quickstart's settings that matter here: every call sampled into telemetry (a failure needs its inputs to
# be clustered and annotated). Canaries off: no controller runs, and nothing should score in the background.
ENV = {"RATCHET_TELEMETRY__SAMPLING_RATE": "1.0", "RATCHET_TELEMETRY__FLUSH_INTERVAL_S": "0.2",
       "RATCHET_MONITOR__CANARY__ENABLED": "false", "COLUMNS": "160"}



def cluster_scores(labels: list[int], gold: list[str]) -> dict[str, float]:
    """Purity, inverse purity and ARI: the clustering benchmark's own code (``benchmarks/triage_clustering.py``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from triage_clustering import scores

    return scores(labels, gold)


# -- the workspace and its processes ----------------------------------------------------------------------------
_REGISTRY: Any = None


class Workspace:
    """One ``ratchet init`` workspace (its ``ratchet.toml`` names ``.ratchet`` as home) and the commands run in it."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.config = root / "ratchet.toml"
        self.log = log
        self.env = {**os.environ, **ENV}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ratchet", "--config", str(self.config), *args]

    def run(self, *args: str, timeout: float = 3600, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        with self.log.open("a") as fh:
            fh.write(f"$ ratchet {' '.join(args)}  (exit {done.returncode})\n{done.stdout[-20000:]}"
                     f"{done.stderr[-5000:]}\n")
        if check and done.returncode != 0:
            raise RuntimeError(f"ratchet {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def json(self, *args: str, timeout: float = 3600, check: bool = True) -> Any:
        done = self.run(*args, timeout=timeout, check=check)
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise RuntimeError(f"ratchet {' '.join(args)} printed no JSON (exit {done.returncode}): "
                               f"{done.stdout[-1000:]} {done.stderr[-1000:]}") from None

    def has(self, *args: str, option: str) -> bool:
        """Whether this checkout's ``ratchet <args> --help`` knows ``option`` (phase 2 and eval-regression)."""
        done = subprocess.run(self.argv(*args, "--help"), cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=120, check=False)
        return done.returncode == 0 and option in done.stdout

    def registry(self) -> Any:
        """The programs of the workspace, loaded once per process: every copy's ``ratchet_programs.py`` registers
        the same names, which a second import in this process would refuse."""
        global _REGISTRY
        if _REGISTRY is None:
            from ratchet.programs import load_programs

            _REGISTRY = load_programs(self.settings())
        return _REGISTRY

    def settings(self) -> Any:
        from ratchet.config import load_settings

        saved = {k: os.environ.get(k) for k in ENV}
        os.environ.update(ENV)
        try:
            return load_settings(self.config)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(ws: Workspace, timeout_s: float = 300.0) -> Any:
    """A real ``ratchet serve`` on a free loopback port, ready; stopped (SIGTERM, then SIGKILL) at the end."""
    port = _free_port()
    with (ws.root / "serve.log").open("ab") as log:
        proc = subprocess.Popen(ws.argv("serve", "--port", str(port), "--log-level", "warning"), cwd=ws.root,
                                env=ws.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ratchet serve exited ({proc.returncode}); see {ws.root / 'serve.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"ratchet serve not ready after {timeout_s:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


# -- step 2 and 3: traffic and feedback --------------------------------------------------------------------------

def traffic_texts(intents: list[str], n: int, seed: int) -> tuple[list[tuple[str, str]], str]:
    """``n`` (text, gold intent) pairs of the upstream test split of ``intents``, minus any text of the program's
    training data, in a seeded order (repeated when ``n`` is larger than the pool); and where they came from."""
    train = {" ".join(json.loads(line)["text"].lower().split())
             for line in (BUNDLED / "train.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()}
    if UPSTREAM_TEST.exists():
        with UPSTREAM_TEST.open(newline="", encoding="utf-8") as fh:
            rows = [(r["text"], r["category"]) for r in csv.DictReader(fh) if r["category"] in intents]
        source = str(UPSTREAM_TEST)
    else:  # the bundled test split is every upstream test row of the program's intents
        rows = [(d["text"], d["intent"]) for d in map(json.loads, (BUNDLED / "test.jsonl").read_text(
            encoding="utf-8").splitlines()) if d.get("intent") in intents]
        source = str(BUNDLED / "test.jsonl")
    pool = [r for r in rows if " ".join(r[0].lower().split()) not in train]
    random.Random(seed).shuffle(pool)
    return [pool[i % len(pool)] for i in range(n)], f"{source} ({len(pool)} texts of {len(intents)} intents)"


@dataclass
class Call:
    """One request of the simulated week and what became of it."""

    index: int
    text: str
    gold: str
    status: int = 0
    request_id: str | None = None
    predicted: str | None = None
    version: str | None = None
    error_type: str | None = None
    latency_ms: float = 0.0
    feedback_status: int | None = None

    @property
    def failed(self) -> bool:
        """What triage should find: an error, or an answer that is not the gold label (scored 0)."""
        return self.predicted != self.gold


def _key_if_needed(ws: Workspace, url: str) -> str | None:
    """An API key with the predict and feedback roles when the server refuses anonymous calls (``auth.mode``)."""
    if httpx.get(f"{url}/v1/programs", timeout=30).status_code != 401:
        return None
    created = ws.json("keys", "create", "--name", "flywheel-proof", "--role", "predict", "--role", "feedback",
                      "--json")
    return created["key"]


def serve_week(ws: Workspace, traffic: list[tuple[str, str]], concurrency: int, progress: Any) -> dict[str, Any]:
    """Steps 2–3: send the week's traffic to a real server, and feedback from the labels on each answer."""
    calls = [Call(i, text, gold) for i, (text, gold) in enumerate(traffic)]
    done = [0]
    lock = threading.Lock()
    with served(ws) as url:
        key = _key_if_needed(ws, url)
        headers = {"X-API-Key": key} if key else {}
        started = time.perf_counter()
        with httpx.Client(timeout=120, headers=headers) as client:

            def one(call: Call) -> None:
                t0 = time.perf_counter()
                response = client.post(f"{url}/v1/programs/{SIG}/predict",
                                       json={"inputs": {"text": call.text}, "user_id": f"customer-{call.index}"})
                call.latency_ms = (time.perf_counter() - t0) * 1000
                call.status = response.status_code
                body = response.json()
                call.request_id = body.get("request_id")
                call.version = body.get("version")
                if response.status_code == 200:
                    call.predicted = (body.get("outputs") or {}).get(LABEL)
                else:
                    call.error_type = body.get("error_type") or body.get("error") or f"http_{response.status_code}"
                if call.request_id:
                    sent = client.post(f"{url}/v1/feedback",
                                       json={"request_id": call.request_id, "score": 0.0 if call.failed else 1.0})
                    call.feedback_status = sent.status_code
                with lock:
                    done[0] += 1
                    if done[0] % 50 == 0 or done[0] == len(calls):
                        progress(f"served {done[0]}/{len(calls)} ({time.perf_counter() - started:.0f} s)")

            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(one, calls))
        seconds = time.perf_counter() - started
    latencies = sorted(c.latency_ms for c in calls)
    answered = [c for c in calls if c.status == 200]
    return {"calls": calls, "api_key_used": key is not None, "seconds": round(seconds, 1),
            "summary": {"requests": len(calls), "answered": len(answered),
                        "errors": dict(Counter(c.error_type for c in calls if c.status != 200)),
                        "accuracy": round(sum(not c.failed for c in answered) / len(answered), 4) if answered else None,
                        "failures": sum(c.failed for c in calls),
                        "feedback_accepted": sum(c.feedback_status == 202 for c in calls),
                        "feedback_refused": sum(c.feedback_status not in (None, 202) for c in calls),
                        "versions": dict(Counter(c.version for c in calls)),
                        "seconds": round(seconds, 1), "throughput_rps": round(len(calls) / seconds, 2),
                        "latency_ms": {"p50": round(_quantile(latencies, 0.5), 1),
                                       "p95": round(_quantile(latencies, 0.95), 1),
                                       "max": round(latencies[-1], 1) if latencies else 0.0}}}


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# -- step 4: cluster quality against the truth -------------------------------------------------------------------

def _weighted_purity(groups: list[list[Any]]) -> float:
    total = sum(len(g) for g in groups)
    return sum(Counter(g).most_common(1)[0][1] for g in groups if g) / total if total else 0.0


def cluster_quality(report: dict[str, Any], calls: list[Call], seed: int, shuffles: int = 200) -> dict[str, Any]:
    """Phase 1's clusters against the truth the benchmark kept: (gold, predicted) pairs and gold labels."""
    by_id = {c.request_id: c for c in calls if c.request_id}
    section = (report.get("signatures") or {}).get(SIG) or {}
    clusters = section.get("clusters") or []
    failures = {c.request_id for c in calls if c.failed and c.request_id}
    pair_groups: list[list[tuple[str, str | None]]] = []
    gold_groups: list[list[str]] = []
    per_cluster = []
    member_ids: list[str] = []
    unknown = 0
    for cluster in clusters:
        members = [by_id.get(m["request_id"]) for m in cluster["members"]]
        unknown += sum(m is None for m in members)
        known = [m for m in members if m is not None]
        member_ids.extend(m.request_id for m in known if m.request_id)
        pairs = [(m.gold, m.predicted or f"error:{m.error_type}") for m in known]
        golds = [m.gold for m in known]
        pair_groups.append(pairs)
        gold_groups.append(golds)
        top_pair, top_n = Counter(pairs).most_common(1)[0] if pairs else ((None, None), 0)
        per_cluster.append({"id": cluster["id"], "size": cluster["size"], "terms": cluster["terms"][:4],
                            "top_pair": list(top_pair), "pair_purity": round(top_n / len(pairs), 3) if pairs else None,
                            "gold_purity": round(Counter(golds).most_common(1)[0][1] / len(golds), 3)
                            if golds else None})
    sizes = sorted((len(g) for g in pair_groups), reverse=True)
    flat_pairs = [p for g in pair_groups for p in g]
    labels = [i for i, g in enumerate(pair_groups) for _ in g]
    rng = random.Random(seed)
    chance_pair, chance_gold = [], []
    for _ in range(shuffles):  # the same cluster sizes filled at random from the same failures
        shuffled = flat_pairs[:]
        rng.shuffle(shuffled)
        groups, at = [], 0
        for size in sizes:
            groups.append(shuffled[at:at + size])
            at += size
        chance_pair.append(_weighted_purity(groups))
        chance_gold.append(_weighted_purity([[p[0] for p in g] for g in groups]))
    multi = [g for g in pair_groups if len(g) > 1]
    gold_scores = cluster_scores(labels, [p[0] for p in flat_pairs]) if flat_pairs else {}
    pair_scores = cluster_scores(labels, [f"{p[0]}->{p[1]}" for p in flat_pairs]) if flat_pairs else {}
    clustered = len(failures & set(member_ids))
    return {
        "failures": len(failures), "report_failures": section.get("failures", 0),
        "clustered_failures": clustered, "share_of_failures_clustered": round(clustered / len(failures), 4)
        if failures else None,
        "members_not_failures": len(set(member_ids) - failures), "members_unknown": unknown,
        "failure_types": section.get("failure_types"),
        "clusters": len(pair_groups), "singletons": sum(s == 1 for s in sizes),
        "sizes": {"max": sizes[0] if sizes else 0, "median": _quantile(sorted(sizes), 0.5),
                  "mean": round(sum(sizes) / len(sizes), 2) if sizes else 0, "top10": sizes[:10]},
        "pair_purity": round(_weighted_purity(pair_groups), 4),
        "gold_purity": round(_weighted_purity(gold_groups), 4),
        "pair_purity_clusters_of_2_plus": round(_weighted_purity(multi), 4) if multi else None,
        "gold_purity_clusters_of_2_plus": round(_weighted_purity([[p[0] for p in g] for g in multi]), 4)
        if multi else None,
        "items_in_clusters_of_2_plus": sum(len(g) for g in multi),
        "chance_pair_purity": round(sum(chance_pair) / len(chance_pair), 4) if chance_pair else None,
        "chance_gold_purity": round(sum(chance_gold) / len(chance_gold), 4) if chance_gold else None,
        "gold_inverse_purity": round(gold_scores.get("inverse_purity", 0.0), 4),
        "gold_ari": round(gold_scores.get("ari", 0.0), 4),
        "pair_inverse_purity": round(pair_scores.get("inverse_purity", 0.0), 4),
        "pair_ari": round(pair_scores.get("ari", 0.0), 4),
        "confusions": [{"gold": g, "predicted": p, "n": n} for (g, p), n in Counter(flat_pairs).most_common(8)],
        "largest_clusters": per_cluster[:8],
    }


# -- step 5: the simulated annotators (this proof only) ---------------------------------------------------------

def _draw(*parts: object) -> float:
    from ratchet.hashing import sha256_hex

    return int(sha256_hex(":".join(map(str, parts)))[:15], 16) / 16**15


def simulated_annotation(ws: Workspace, calls: list[Call], intents: list[str], error_rate: float,
                         seed: int) -> dict[str, Any]:
    """SIMULATED ANNOTATORS, USED ONLY IN THIS PROOF: they answer from the gold labels through the real queue API.

    ``sim-annotator-1`` takes every task it is given (``next_task``, under a lease) and accepts the model's output
    when it is the gold intent, else corrects ``intent`` to the gold one. ``sim-annotator-2`` then takes what is
    left — the tasks that need a second annotator — and answers the same way, except that every
    ``round(1 / error_rate)``-th answer is another intent (a human's slip at a fixed rate; which intent is a stable
    draw), so agreement is not perfect by construction and kappa does not depend on the luck of a few draws.
    """
    from ratchet.annotate import next_task, submit
    from ratchet.store.db import StateDB

    settings = ws.settings()
    registry = ws.registry()
    db = StateDB.connect(settings)
    gold = {c.request_id: c.gold for c in calls if c.request_id}
    counts: dict[str, Counter[str]] = {ANNOTATOR_1: Counter(), ANNOTATOR_2: Counter()}
    slips = 0
    every = max(1, round(1 / error_rate)) if error_rate > 0 else 0
    started = time.perf_counter()
    try:
        for annotator in (ANNOTATOR_1, ANNOTATOR_2):
            while (task := next_task(db, annotator=annotator, signature=SIG)) is not None:
                truth = gold.get(task.request_id)
                if truth is None:  # not a request of this proof: leave it to someone else
                    submit(db, registry, task.task_id, annotator, skip=True)
                    counts[annotator]["skip"] += 1
                    continue
                answer = truth
                if annotator == ANNOTATOR_2 and every and (sum(counts[annotator].values()) + 1) % every == 0:
                    others = [i for i in intents if i != truth]
                    answer = others[int(_draw(seed, "which", task.task_id) * len(others))]
                    slips += 1
                if task.output.get(LABEL) == answer:
                    kind = submit(db, registry, task.task_id, annotator, accept=True).kind
                else:
                    kind = submit(db, registry, task.task_id, annotator, set_values={LABEL: answer}).kind
                counts[annotator][kind] += 1
    finally:
        db.dispose()
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "answers": {k: dict(v) for k, v in counts.items()},
            "annotator_2_slips": slips, "error_rate": error_rate}


# -- step 6: phase 2, the cycles, the golden set -----------------------------------------------------------------

def _signature_summary(summary: dict[str, Any]) -> dict[str, Any]:
    s = (summary.get("signatures") or {}).get(SIG) or {}
    evaluation = (s.get("phases") or {}).get("evaluate", {}).get("result") or {}
    comparison = evaluation.get("comparison") or {}
    phases = {name: (p or {}).get("status") for name, p in (s.get("phases") or {}).items()}
    return {"run_id": summary.get("run_id"), "success": summary.get("success"), "seconds": summary.get("seconds"),
            "phases": phases, "errors": s.get("errors"), "baseline_version": evaluation.get("baseline_version"),
            "candidate_version": s.get("candidate_version"), "experiment_id": s.get("experiment_id"),
            "held_out": {k: comparison.get(k) for k in ("n", "baseline_mean", "candidate_mean", "mean_difference",
                                                        "ci_low", "ci_high", "confidence", "p_value", "test")},
            "decision": (s.get("decision") or {}).get("reason"),
            "deploy": bool((s.get("decision") or {}).get("deploy")),
            "counts": {k: v for k, v in s.items() if isinstance(v, int | float) and not isinstance(v, bool)}}


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(centre - half, 4), round(centre + half, 4))


def golden_scores(ws_a: Workspace, ws_b: Workspace, versions: dict[str, tuple[Workspace, str]]) -> dict[str, Any]:
    """Score ``versions`` (name → its workspace and version) on copy A's latest golden set, in this process, with
    the same embedded model; per-version accuracy (Wilson 95 %) and paired differences (bootstrap 95 %, McNemar)."""
    import dspy

    from ratchet.data.golden import load_golden
    from ratchet.evaluation import compare_paired, evaluate_program
    from ratchet.lm.setup import build_lms
    from ratchet.programs.versions import VersionStore

    settings = ws_a.settings()
    registry = ws_a.registry()
    spec = registry.get(SIG)
    golden = load_golden(settings, SIG, registry=registry)
    if not golden:
        return {"n": 0, "note": "copy A has no golden set after phase 2"}
    schema = spec.schema
    examples = [dspy.Example(**e.values).with_inputs(*schema.input_names) for e in golden]
    lms = build_lms(settings.lm, cache=False).prepare()
    out: dict[str, Any] = {"n": len(examples), "labels": dict(Counter(e.values.get(LABEL) for e in golden)),
                           "versions": {}, "paired": {}}
    per_example: dict[str, list[float]] = {}
    for name, (ws, version) in versions.items():
        store = VersionStore(ws.settings().home_dir)
        program = store.load(spec, version)
        with dspy.context(trace=None, disable_history=True):
            report = evaluate_program(program, examples, spec.metric, lm=lms.task, adapter=lms.adapter)
        per_example[name] = report.scores
        k = round(sum(report.scores))
        out["versions"][name] = {"version": version, "score": round(report.score, 4),
                                 "interval_95": _wilson(k, report.n), "correct": k,
                                 "seconds_per_call": round(report.seconds_per_call, 3)}
    names = list(per_example)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            out["paired"][f"{second} - {first}"] = compare_paired(per_example[first], per_example[second],
                                                                  confidence=0.95).to_dict()
    return out


def _dataset_growth(ws: Workspace) -> dict[str, Any]:
    """The latest training dataset of the signature: size, and examples that came from annotation."""
    from ratchet.data.datasets import DatasetStore

    settings = ws.settings()
    store = DatasetStore(settings.home_dir, settings.data, registry=ws.registry())
    latest = store.latest_version(SIG)
    if latest is None:
        return {"version": None, "examples": 0}
    records = store.load(SIG).records
    return {"version": str(latest), "examples": len(records),
            "by_source": dict(Counter(r.source for r in records))}


def phase2_and_cycles(root: Path, week: str, requests: int, cycle_seed: int, log: Path, progress: Any
                      ) -> dict[str, Any]:
    """Step 6: copy A (phase 2, then the cycle) against copy B (the same cycle, no phase 2)."""
    ws_a = Workspace(root.with_name(root.name + "-A"), log)
    ws_b = Workspace(root.with_name(root.name + "-B"), log)
    for ws in (ws_a, ws_b):
        shutil.rmtree(ws.root, ignore_errors=True)
        shutil.copytree(root, ws.root, symlinks=True)
    out: dict[str, Any] = {"copies": {"A": str(ws_a.root), "B": str(ws_b.root)}}
    if not ws_a.has("flywheel", "run", option="--continue"):
        out["skipped"] = ("this checkout's `ratchet flywheel run` has no --continue (phase 2 not merged yet): "
                          "step 6 not run")
        return out
    progress("phase 2 in copy A")
    t0 = time.perf_counter()
    out["phase2"] = ws_a.json("flywheel", "run", "--week", week, "--continue", "--json")
    out["phase2_seconds"] = round(time.perf_counter() - t0, 1)
    out["golden_after_phase2"] = ws_a.json("golden", "stats", "--signature", SIG, "--json", check=False)
    out["training_after_phase2"] = _dataset_growth(ws_a)
    for name, ws in (("A", ws_a), ("B", ws_b)):
        progress(f"cycle in copy {name}")
        t0 = time.perf_counter()
        summary = ws.json(*cycle_args(requests, cycle_seed), check=False)
        out[f"cycle_{name}"] = {**_signature_summary(summary), "wall_seconds": round(time.perf_counter() - t0, 1),
                                "dataset": _dataset_growth(ws)}
    versions: dict[str, tuple[Workspace, str]] = {"production": (ws_a, out["cycle_A"]["baseline_version"] or "base")}
    for name, ws in (("A", ws_a), ("B", ws_b)):
        if out[f"cycle_{name}"]["candidate_version"]:
            versions[f"candidate_{name}"] = (ws, out[f"cycle_{name}"]["candidate_version"])
    progress("scoring production and the candidates on copy A's golden set")
    out["golden"] = golden_scores(ws_a, ws_b, versions)
    if ws_a.has(option="eval-regression"):
        # production and the live candidate (A's, when its cycle deployed it); B's candidate is live only if B's
        # cycle deployed it too, so it is scored above, in this process, on the same examples in any case
        out["eval_regression_A"] = ws_a.json("eval-regression", "--signature", SIG, "--json", "--no-dispatch",
                                             check=False)
        golden_dir = ws_a.settings().home_dir / "golden"
        target = ws_b.settings().home_dir / "golden"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(golden_dir, target)  # after B's cycle: B's candidate, A's golden examples
        out["eval_regression_B_on_A_golden"] = ws_b.json("eval-regression", "--signature", SIG, "--json",
                                                         "--no-dispatch", check=False)
    else:
        out["eval_regression"] = "not in this checkout (`ratchet eval-regression` not merged yet)"
    return out


# -- the whole proof ---------------------------------------------------------------------------------------------

def run(args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    year, week_no, _ = now.isocalendar()
    week = f"{year}-W{week_no:02d}"
    result: dict[str, Any] = {
        "command": "python benchmarks/flywheel_proof.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · Python "
                   f"{platform.python_version()}",
        "measured_at": now.isoformat(timespec="seconds"), "week": week,
        "load_average": {"before": round(os.getloadavg()[0], 2)}, "seconds": {}}
    root = args.home.resolve() if args.home else Path(tempfile.mkdtemp(prefix="flywheel-proof-")) / "ws"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    log = root.parent / f"{root.name}-commands.log"
    ws = Workspace(root, log)
    result["workspace"] = str(root)
    started = time.perf_counter()

    progress(f"1. workspace {root}")
    ws.run("init", ".", "--force")
    from ratchet.annotate import allowed_labels

    intents = sorted(allowed_labels(ws.registry().get(SIG).schema)[LABEL])
    traffic, source = traffic_texts(intents, args.requests, args.seed)
    result["traffic_source"] = source

    progress(f"2-3. serving {len(traffic)} requests of {week} with feedback from the labels")
    t0 = time.perf_counter()
    week_run = serve_week(ws, traffic, args.concurrency, progress)
    calls: list[Call] = week_run["calls"]
    result["serve"] = week_run["summary"]
    result["serve"]["api_key_used"] = week_run["api_key_used"]
    result["seconds"]["serve"] = round(time.perf_counter() - t0, 1)

    progress("4. phase 1: ratchet flywheel run")
    t0 = time.perf_counter()
    report = ws.json("flywheel", "run", "--week", week, "--double-share", str(args.double_share), "--json")
    result["seconds"]["phase1"] = round(time.perf_counter() - t0, 1)
    result["phase1"] = {"totals": report.get("totals"), "annotation_tasks": report.get("annotation_tasks")}
    result["clusters"] = cluster_quality(report, calls, args.seed)

    progress("5. simulated annotators (this proof only) work the queue")
    t0 = time.perf_counter()
    result["annotation"] = simulated_annotation(ws, calls, intents, args.error_rate, args.seed)
    result["annotation"]["stats"] = ws.json("annotate", "stats", "--json")
    result["annotation"]["export"] = ws.json("annotate", "export", "--output-dir", str(root / "golden_export"),
                                             "--json")
    result["seconds"]["annotation"] = round(time.perf_counter() - t0, 1)

    if args.no_cycles:
        result["step6"] = {"skipped": "--no-cycles"}
    else:
        t0 = time.perf_counter()
        result["step6"] = phase2_and_cycles(root, week, len(calls), args.cycle_seed, log, progress)
        result["seconds"]["step6"] = round(time.perf_counter() - t0, 1)
    result["seconds"]["total"] = round(time.perf_counter() - started, 1)
    result["load_average"]["after"] = round(os.getloadavg()[0], 2)
    result["calls"] = [asdict(c) for c in calls]
    return result


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_summary(result: dict[str, Any], console: Console) -> None:
    serve, clusters, annotation = result["serve"], result["clusters"], result["annotation"]
    table = Table(title=f"the human flywheel on Banking77, week {result['week']} "
                        f"({result['seconds'].get('total', 0):.0f} s; {result['machine']})", title_justify="left")
    table.add_column("step")
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    rows = [
        ("serve", "requests / answered / production accuracy",
         f"{serve['requests']} / {serve['answered']} / {_fmt(serve['accuracy'])}"),
        ("serve", "latency p50 / p95 (ms), throughput", f"{serve['latency_ms']['p50']:.0f} / "
         f"{serve['latency_ms']['p95']:.0f}, {serve['throughput_rps']} req/s ({serve['seconds']:.0f} s)"),
        ("feedback", "accepted / refused", f"{serve['feedback_accepted']} / {serve['feedback_refused']}"),
        ("phase 1", "failures (truth) / in the report / clustered",
         f"{clusters['failures']} / {clusters['report_failures']} / {clusters['clustered_failures']} "
         f"({_fmt(clusters['share_of_failures_clustered'])})"),
        ("phase 1", "clusters (singletons), largest, median size",
         f"{clusters['clusters']} ({clusters['singletons']}), {clusters['sizes']['max']}, "
         f"{clusters['sizes']['median']}"),
        ("phase 1", "purity (gold, predicted) pair / chance",
         f"{_fmt(clusters['pair_purity'])} / {_fmt(clusters['chance_pair_purity'])}"),
        ("phase 1", "purity gold label / chance",
         f"{_fmt(clusters['gold_purity'])} / {_fmt(clusters['chance_gold_purity'])}"),
        ("phase 1", "same, clusters of 2+ only (items)",
         f"pair {_fmt(clusters['pair_purity_clusters_of_2_plus'])}, gold "
         f"{_fmt(clusters['gold_purity_clusters_of_2_plus'])} ({clusters['items_in_clusters_of_2_plus']})"),
        ("phase 1", "inverse purity / ARI (gold)",
         f"{_fmt(clusters['gold_inverse_purity'])} / {_fmt(clusters['gold_ari'])}"),
    ]
    for name, kinds in annotation["answers"].items():
        rows.append(("annotate", f"{name} (simulated)", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))))
    for g in annotation["stats"].get("agreement", []):
        rows.append(("annotate", "double-annotated: agree / tasks, Cohen's kappa",
                     f"{g['agreed']} / {g['tasks']}, {_fmt(g['kappa'])}"))
    export = annotation["export"]
    rows.append(("annotate", "exported / conflicts", f"{export['exported'].get(SIG, 0)} / "
                 f"{export['conflicts'].get(SIG, 0)}"))
    step6 = result.get("step6") or {}
    if step6.get("skipped"):
        rows.append(("phase 2 + cycle", "skipped", step6["skipped"]))
    else:
        for name in ("A", "B"):
            cycle = step6.get(f"cycle_{name}") or {}
            held = cycle.get("held_out") or {}
            label = "A: phase 2 + cycle" if name == "A" else "B: cycle only"
            if held.get("n"):
                rows.append((label, f"held-out ({held['n']}): production → candidate",
                             f"{_fmt(held['baseline_mean'])} → {_fmt(held['candidate_mean'])}, "
                             f"{held['mean_difference']:+.3f} [{held['ci_low']:+.3f}, {held['ci_high']:+.3f}] "
                             f"({_fmt(held.get('confidence'), 2)}), {'deploy' if cycle.get('deploy') else 'keep'}"))
            else:
                rows.append((label, "cycle", f"no evaluation: {cycle.get('errors') or cycle.get('phases')}"))
        golden = step6.get("golden") or {}
        for name, v in (golden.get("versions") or {}).items():
            rows.append(("golden (copy A)", f"{name} {v['version']} on {golden['n']}",
                         f"{v['score']:.3f} [{v['interval_95'][0]:.3f}, {v['interval_95'][1]:.3f}]"))
        for name, cmp in (golden.get("paired") or {}).items():
            rows.append(("golden (copy A)", name, f"{cmp['mean_difference']:+.3f} [{cmp['ci_low']:+.3f}, "
                         f"{cmp['ci_high']:+.3f}], p = {cmp['p_value']:.3g}"))
        for key, label in (("eval_regression_A", "eval-regression, copy A"),
                           ("eval_regression_B_on_A_golden", "eval-regression, copy B")):
            sig = ((step6.get(key) or {}).get("signatures") or {}).get(SIG) or {}
            for v in sig.get("versions") or []:
                rows.append((label, f"{v.get('version')} ({', '.join(v.get('roles') or [])}) on "
                             f"{sig.get('golden_size')}", f"{_fmt(v.get('score'))}"))
    for row in rows:
        table.add_row(*row)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests in the simulated week (default 400: "
                                                                    "every upstream test text of the 10 intents once)")
    parser.add_argument("--home", type=Path, default=None, help="workspace to create (emptied first; copies A and "
                                                                "B go next to it); default: a temporary directory")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.1, help="share of tasks the second simulated "
                                                                       "annotator gets wrong")
    parser.add_argument("--double-share", type=float, default=0.25, help="share of annotation tasks phase 1 gives "
                        "two annotators (ratchet's default 0.1 leaves about a dozen here: too few for kappa)")
    parser.add_argument("--cycle-seed", type=int, default=0, help="the cycles' --seed (the quickstart's: 0); "
                        "another value measures how much the optimizer's own randomness moves the scores")
    parser.add_argument("--no-cycles", action="store_true", help="stop after step 5 (no phase 2, no cycles)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "flywheel_proof.json")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = parser.parse_args()
    console = Console(stderr=args.json)

    def progress(message: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", highlight=False)

    result = run(args, progress)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "calls"}, indent=2, default=str))
    else:
        print_summary(result, console)
        console.print(f"full result: {args.out}", highlight=False)


if __name__ == "__main__":
    main()
