"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (issue 13, item 9).

A real ``ratchet serve`` on the embedded model, with API keys required and a populated home (a
candidate version of ``classify_intent`` in an experiment taking half its traffic, served
requests and feedback), is fuzzed by Schemathesis' ``st run`` from ``/openapi.json``: every
operation the schema documents, in its coverage phase (boundary and invalid values,
deterministic) and its fuzzing phase (random valid and invalid requests, seeded).

- With an admin key made by ``ratchet keys create``: every check Schemathesis has (no 5xx, status
  codes, content types, headers and bodies as documented, invalid data refused, valid data
  accepted, unsupported methods answered 405, and each request sent again without the key
  answered 401).
- Without a key, from the same schema: no 5xx, answers as documented, and every operation that
  declares a role answers 401 whatever the request holds (``fuzz_checks.refused_without_a_key``).

The budget is a fixed number of examples per operation and a fixed seed, so a CI run is bounded
(about four minutes on 2 cores: most cases are refused before the model runs; a valid predict
costs 0.1–1 s of the 270M model).

On failure the assertion shows Schemathesis' report of each failure with a ``curl`` reproducer.
``RATCHET_FUZZ_EXAMPLES`` and ``RATCHET_FUZZ_SEED`` change the budget and the seed for a longer run by hand.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import typing
from pathlib import Path

import httpx
import pytest

from ratchet.config import load_settings
from ratchet.data.sampling import balanced_demos
from ratchet.evaluation import attach_demos, training_examples
from ratchet.loop.rollouts import rollout_controller
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = int(os.environ.get("RATCHET_FUZZ_EXAMPLES", "30"))  # per operation, in the fuzzing phase
STATEFUL_EXAMPLES = max(1, EXAMPLES // 3)  # scenarios of predict → feedback (each runs the model)
ANONYMOUS_EXAMPLES = 4 * EXAMPLES  # without a key nothing reaches the model: cheap cases
SEED = int(os.environ.get("RATCHET_FUZZ_SEED", "13"))
BUDGET_S = 420  # the whole `st run`; it takes about a third of this
# The server's own bound on an answer: an LM call longer than serve.request_timeout_s (default 30 s) answers 504.
RESPONSE_TIME_S = 30

# [lm] max_tokens: the fuzz checks the API's contract, not the model. On junk input the 270M base model can ramble
# to its whole output budget (256 tokens: 11 s for extract_booking here, see docs/benchmarks.md); 64 keeps every
# call far from serve.request_timeout_s on a loaded CI machine.
CONFIG = """home = "state"
[lm]
max_tokens = 64
[auth]
mode = "required"
[telemetry]
sampling_rate = 1.0
[serve]
outcome_flush_interval_s = 0.5
routing_check_interval_s = 0.5
[rollout]
stages = [50, 100]
start_in_shadow = false
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory, ratchet_server) -> typing.Iterator[dict[str, typing.Any]]:
    """A running server on a home with a live experiment, some served requests and some feedback."""
    root = tmp_path_factory.mktemp("fuzz")
    config = root / "ratchet.toml"
    config.write_text(CONFIG)
    settings = load_settings(config)
    registry = load_programs(settings)
    spec = registry.get("classify_intent")
    demos = balanced_demos(training_examples(spec), 8, spec.label_field, seed=0)
    candidate = VersionStore(settings.home_dir).save(spec, attach_demos(spec.build(), demos), lm="embedded",
                                                     adapter="CompletionAdapter", notes="8 balanced demos").version
    rollout_controller(settings, registry).start("classify_intent", candidate, experiment_id="fuzz_candidate")
    created = subprocess.run([sys.executable, "-m", "ratchet", "--config", str(config), "keys", "create",
                              "--name", "fuzz-admin", "--role", "admin", "--json"],
                             capture_output=True, text=True, timeout=120, check=True)
    headers = {"X-API-Key": json.loads(created.stdout)["key"]}
    with ratchet_server(config, timeout_s=120) as url:
        for i, text in enumerate(("my card has not arrived", "I was charged twice", "change my PIN")):
            answer = httpx.post(f"{url}/v1/programs/classify_intent/predict", timeout=60, headers=headers,
                                json={"inputs": {"text": text}, "user_id": f"user-{i}"})
            assert answer.status_code == 200, answer.text
            feedback = httpx.post(f"{url}/v1/feedback", json={"request_id": answer.json()["request_id"],
                                                              "score": 1.0}, timeout=30, headers=headers)
            assert feedback.status_code == 202, feedback.text
        yield {"url": url, "root": root, "registry": registry, "candidate": candidate, "headers": headers}


def st_run(location: str, report: Path, *args: str, env: dict[str, str] | None = None, examples: int = EXAMPLES
           ) -> tuple[dict[str, typing.Any], str, float]:
    """Run ``st run`` on a schema (URL or file); its JSON report, its terminal output and how long it took."""
    command = [sys.executable, "-m", "schemathesis.cli", "run", location,
               "--phases", "examples,coverage,fuzzing,stateful",
               "--max-examples", str(examples), "--seed", str(SEED), "--generation-database", "none",
               "--workers", "1", "--request-timeout", "60", "--max-response-time", str(RESPONSE_TIME_S), "--no-color",
               "--report", "json", "--report-json-path", str(report), *args]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=BUDGET_S, cwd=report.parent,
                          env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - started
    output = done.stdout + done.stderr
    assert report.exists(), f"st run wrote no report (exit {done.returncode}):\n{output[-6000:]}"
    return json.loads(report.read_text()), output, elapsed


def documented_operations(schema: dict[str, typing.Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, item in schema["paths"].items() for method in item}


def summarize(name: str, root: Path, report: dict[str, typing.Any], operations: int, elapsed: float,
              examples: int = EXAMPLES) -> None:
    summary = {"run": name, "operations": operations, "cases": report["test_cases"]["generated"],
               "seconds": round(elapsed, 1), "examples_per_operation": examples, "seed": SEED}
    print(f"\nfuzzing: {json.dumps(summary)}")
    (root / f"fuzz-summary-{name}.json").write_text(json.dumps(summary))


def test_fuzzing_every_operation_with_a_key_finds_no_5xx_and_no_schema_violation(served) -> None:
    url, root, headers = served["url"], served["root"], served["headers"]
    assert httpx.get(f"{url}/openapi.json", timeout=10).status_code == 401  # the schema itself needs a key
    schema = httpx.get(f"{url}/openapi.json", timeout=10, headers=headers).json()
    documented = documented_operations(schema)
    expected = {f"POST /v1/programs/{name}/predict" for name in served["registry"].names()} | {
        "POST /v1/feedback", "GET /v1/programs", "GET /health", "GET /ready", "GET /metrics",
        "GET /v1/experiments", "POST /v1/experiments/{experiment_id}/{action}",
        "POST /v1/experiments/{experiment_id}/rollback", "DELETE /v1/users/{user_id}/data"}
    assert expected <= documented, f"operations missing from the schema: {sorted(expected - documented)}"

    key_header = "X-API-Key: " + headers["X-API-Key"]
    report, output, elapsed = st_run(f"{url}/openapi.json", root / "fuzz-report.json", "--checks", "all",
                                     "--header", key_header)
    summarize("admin-key", root, report, len(documented), elapsed)
    assert report["failures"] == [] and report["errors"] == [], output[-12000:]
    assert report["exit_code"] == 0 and report["stop_reason"] == "completed", output[-6000:]
    assert report["operations"]["tested"] == report["operations"]["total"] == len(documented), report["operations"]
    assert report["phases"]["coverage"]["status"] == "success" and report["phases"]["fuzzing"]["status"] == "success"
    assert report["test_cases"]["generated"] >= 20 * len(documented), report["test_cases"]
    assert report["test_cases"]["errored"] == 0
    assert report["phases"]["stateful"]["status"] == "success"  # it follows predict → feedback by request_id
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", output)
    assert links and int(links.group(1)) >= 2, output[-3000:]  # predict → feedback, experiments → actions
    print(links.group(0))

    # Random request ids are never issued ones (404): a stateful run of predict → feedback (the schema's link) sends
    # feedback, with generated scores and corrections, on requests the server answered.
    report, output, elapsed = st_run(f"{url}/openapi.json", root / "fuzz-report-feedback.json", "--checks", "all",
                                     "--header", key_header, "--phases", "stateful",
                                     "--include-path-regex", "(predict|feedback)$", examples=STATEFUL_EXAMPLES)
    summarize("predict-feedback", root, report, 4, elapsed, STATEFUL_EXAMPLES)
    assert report["failures"] == [] and report["errors"] == [], output[-12000:]
    assert report["phases"]["stateful"]["status"] == "success", output[-3000:]
    metrics = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    feedback = sum(float(v) for v in re.findall(r"^ratchet_feedback_total\{[^}]*\} ([0-9.e+]+)$", metrics, re.M))
    assert feedback >= 3 + 10, feedback  # the seeded three, and the stateful run's on issued ids

    # The server is still well after it: ready, every program answering, no traceback in its log.
    assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
    for spec in served["registry"]:
        answer = httpx.post(f"{url}/v1/programs/{spec.name}/predict", json={"inputs": spec.schema.neutral_inputs()},
                            timeout=60, headers=headers)
        assert answer.status_code == 200, answer.text
    log = (root / "server.log").read_text(errors="replace")
    assert "Traceback" not in log and "unhandled error" not in log, log[-6000:]


def test_fuzzing_without_a_key_is_401_everywhere_but_the_probes(served) -> None:
    url, root = served["url"], served["root"]
    schema = httpx.get(f"{url}/openapi.json", timeout=10, headers=served["headers"]).json()
    (root / "openapi.json").write_text(json.dumps(schema))
    public = {f"{m.upper()} {p}" for p, item in schema["paths"].items() for m, op in item.items()
              if op.get("x-ratchet-role") == "public"}
    assert public == {"GET /health", "GET /ready"}

    report, output, elapsed = st_run(
        str(root / "openapi.json"), root / "fuzz-report-anonymous.json", "--url", url,
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_headers_conformance,response_schema_conformance,refused_without_a_key",
        env={"SCHEMATHESIS_HOOKS": "fuzz_checks", "PYTHONPATH": str(Path(__file__).parent)},
        examples=ANONYMOUS_EXAMPLES)
    summarize("no-key", root, report, len(documented_operations(schema)), elapsed, ANONYMOUS_EXAMPLES)
    assert report["failures"] == [] and report["errors"] == [], output[-12000:]
    assert report["exit_code"] == 0 and report["operations"]["tested"] == len(documented_operations(schema))
    assert report["test_cases"]["generated"] >= 20 * len(documented_operations(schema)), report["test_cases"]
