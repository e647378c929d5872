"""Issue 13, item 3: inputs the model cannot take are the client's error, refused before any LM call and never
counted as an arm's failure; the routing salt and file paths are never shown to clients (real uvicorn server)."""

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import dspy
import httpx
import pytest
from test_http_api import _wait_ready, intent_responder, running

from ratchet.config import Settings
from ratchet.evaluation import fewshot_program
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.routing import choose_arm
from ratchet.serve import Runtime, metrics
from ratchet.serve.fit import PromptFit, invalid_text
from ratchet.store.outcomes import read_arm_stats

SIG = "classify_intent"
PREDICT = f"/v1/programs/{SIG}/predict"


class WordCounter:
    """An embedded-engine stand-in for the fit check: one token per word, a small context."""

    def __init__(self, n_ctx: int) -> None:
        self.n_ctx = n_ctx
        self.counted = 0
        self.loaded = True

    def count_tokens(self, text: str) -> int:
        self.counted += 1
        return len(text.split()) + 1

    def warm_up(self) -> None:
        pass

    def room_for_prompts(self, tokens: int) -> AbstractContextManager[None]:
        return nullcontext()


@pytest.fixture
def serve(tmp_path: Path, free_port) -> Iterator:
    runtimes: list[Runtime] = []

    @contextmanager
    def start(n_ctx: int = 400, *, experiment: bool = False) -> Iterator[tuple[str, Runtime, ScriptedEngine]]:
        settings = Settings(home=tmp_path / "home")
        settings.serve.max_body_bytes = 200_000
        settings.serve.routing_check_interval_s = 0.05
        settings.telemetry.sampling_rate = 1.0
        settings.rollout.start_in_shadow = False
        settings.lm.max_tokens = 64
        engine = ScriptedEngine(intent_responder)
        lm = dspy.LM("scripted/client", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                     num_retries=0, max_tokens=64)
        bundle = LMBundle.for_lm(lm, CompletionAdapter())
        bundle.engine = WordCounter(n_ctx)  # type: ignore[assignment]
        runtime = Runtime(settings, lms=bundle)
        runtimes.append(runtime)
        if experiment:
            spec = runtime.registry.get(SIG)
            store = VersionStore(settings.home_dir)
            store.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")  # v1
            store.save(spec, fewshot_program(spec, 3), lm="m", adapter="a")  # v2
            controller = RolloutController(settings, runtime.registry, db=runtime.db)
            controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
            runtime.follower.refresh()
        with running(runtime, free_port()) as url:
            assert _wait_ready(url).status_code == 200
            engine.calls = 0  # the warm-up's calls
            yield url, runtime, engine

    yield start
    for runtime in runtimes:
        runtime.close()


def _rejected(reason: str, arm: str = "baseline") -> float:
    return metrics.REJECTED.labels(SIG, arm, reason)._value.get()


def _failures(arm: str = "baseline") -> float:
    return sum(metrics.ERRORS.labels(SIG, "Predict", arm, kind)._value.get()
               for kind in ("invalid_request", "invalid_text", "input_too_long", "lm_error", "internal"))


def test_an_input_over_the_context_is_413_naming_the_field_without_an_lm_call(serve) -> None:
    with serve(n_ctx=400) as (url, runtime, engine):
        ok = httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "where is my card"}})
        assert ok.status_code == 200, ok.text
        calls, failures, rejected = engine.calls, _failures(), _rejected("input_too_long")
        long = httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "word " * 6000}})  # 30 KB
        assert long.status_code == 413, long.text
        body = long.json()
        assert body["error"] == "input_too_long" and body["field"] == "text"
        assert body["tokens"] > body["limit"] == 400 - 64 and "Traceback" not in long.text
        assert engine.calls == calls  # no LM call
        assert _failures() == failures and _rejected("input_too_long") == rejected + 1
        runtime.flush()
        stats = read_arm_stats(runtime.db, SIG)
        assert sum(s.requests for s in stats.values()) == 1 and sum(s.errors for s in stats.values()) == 0


def test_a_short_prompt_is_not_tokenized(serve) -> None:
    with serve(n_ctx=4096) as (url, runtime, _):
        for text in ("where is my card", "my card was stolen", "what is the exchange rate"):
            assert httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": text}}).status_code == 200
        assert runtime.lms.engine.counted <= 1  # the version's own prompt at most; requests fit by their bytes


def test_invalid_text_is_422_in_the_error_shape(serve) -> None:
    with serve() as (url, runtime, engine):
        before = _rejected("invalid_text")
        surrogate = httpx.post(f"{url}{PREDICT}", content=b'{"inputs": {"text": "card \\ud800"}}',
                               headers={"content-type": "application/json"})
        assert surrogate.status_code == 422, surrogate.text
        assert surrogate.json()["error"] == "invalid_text" and surrogate.json()["field"] == "text"
        assert _rejected("invalid_text") == before + 1 and engine.calls == 0
        not_utf8 = httpx.post(f"{url}{PREDICT}", content=b'{"inputs": {"text": "caf\xe9 \xff"}}',
                              headers={"content-type": "application/json"})
        assert not_utf8.status_code == 422 and not_utf8.json()["error"] == "invalid_text"
        assert "detail" not in not_utf8.json() and set(not_utf8.json()) == {"error", "field", "message"}
        broken = httpx.post(f"{url}{PREDICT}", content=b'{"inputs": ', headers={"content-type": "application/json"})
        assert broken.status_code == 422 and broken.json()["error"] == "invalid_request"
        missing = httpx.get(f"{url}/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        runtime.flush()
        assert read_arm_stats(runtime.db, SIG) == {}


@pytest.mark.parametrize("score", ["0.5", True, False, "1", None, [0.5]])
def test_feedback_scores_must_be_numbers(serve, score) -> None:
    with serve() as (url, _, _):
        served = httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "where is my card"}}).json()
        bad = httpx.post(f"{url}/v1/feedback", json={"request_id": served["request_id"], "score": score})
        assert bad.status_code == 422 and bad.json()["field"] == "score" and bad.json()["error"] == "invalid_request"
        for good in (0, 1, 0.5):
            ok = httpx.post(f"{url}/v1/feedback", json={"request_id": served["request_id"], "score": good})
            assert ok.status_code == 202, ok.text


def test_no_response_shows_the_salt_or_a_file_path(serve, tmp_path: Path) -> None:
    with serve(experiment=True) as (url, runtime, _):
        route = runtime.follower.current().routing.route(SIG)
        assert route is not None and route.salt.startswith("exp_1:") and len(route.salt) > len("exp_1:") + 16
        served = httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "where is my card"}, "user_id": "u-1"})
        answers = [served, httpx.get(f"{url}/v1/programs"), httpx.get(f"{url}/health"), httpx.get(f"{url}/ready"),
                   httpx.post(f"{url}/v1/feedback", json={"request_id": served.json()["request_id"], "score": 1}),
                   httpx.get(f"{url}/openapi.json")]
        routing = next(p for p in answers[1].json()["programs"] if p["signature"] == SIG)["routing"]
        assert routing["candidate_version"] == "v2" and "salt" not in routing and "experiment_id" not in routing
        for answer in answers:
            assert route.salt not in answer.text and "exp_1" not in answer.text, answer.url
            assert str(tmp_path) not in answer.text, answer.url


def test_bad_inputs_aimed_at_the_candidate_cannot_fire_the_catastrophe_trigger(serve) -> None:
    """The issue's probe: knowing the salt, a client sends 55 bad requests with user ids that land on the
    candidate (too long, invalid text, invalid fields); the controller's check holds."""
    with serve(n_ctx=400, experiment=True) as (url, runtime, engine):
        route = runtime.follower.current().routing.route(SIG)
        users = [f"u-{i}" for i in range(3000) if choose_arm(route, f"u-{i}") == "candidate"][:55]
        assert len(users) == 55
        bad_inputs = [b'{"text": "' + b"word " * 6000 + b'"}', b'{"text": "\\ud800"}', b'{"txt": "x"}']
        for i, user in enumerate(users):
            body = b'{"inputs": ' + bad_inputs[i % 3] + b', "user_id": "' + user.encode() + b'"}'
            answer = httpx.post(f"{url}{PREDICT}", content=body, headers={"content-type": "application/json"})
            assert answer.status_code in (413, 422) and answer.json()["error"] in (
                "input_too_long", "invalid_text", "invalid_request"), answer.text
        assert engine.calls == 0
        for i in range(40):
            assert httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": f"where is my card {i}"},
                                                       "user_id": f"good-{i}"}).status_code == 200
        runtime.flush()
        stats = read_arm_stats(runtime.db, SIG, experiment_id="exp_1")
        assert all(s.errors == 0 for s in stats.values()) and sum(s.requests for s in stats.values()) == 40
        controller = RolloutController(runtime.settings, runtime.registry, db=runtime.db)
        decision = controller.check("exp_1")
        assert decision.action == "hold", decision.reason
        assert controller.store.get("exp_1").status == "running"
        # the unknown fields never reach the runtime (the request schema refuses them); the others are counted apart
        assert _rejected("input_too_long", "candidate") + _rejected("invalid_text", "candidate") >= 37
        assert json.loads(httpx.get(f"{url}/v1/programs").text)["programs"]


def _fit(n_ctx: int, max_tokens: int = 64) -> tuple[PromptFit, WordCounter]:
    lm = dspy.LM("scripted/fit", engine=ScriptedEngine(intent_responder), cache=False, max_tokens=max_tokens)
    bundle = LMBundle.for_lm(lm, CompletionAdapter())
    counter = WordCounter(n_ctx)
    bundle.engine = counter  # type: ignore[assignment]
    return PromptFit(bundle), counter


def test_the_byte_bounds_spare_the_tokenizer_and_a_version_that_fills_the_context_is_not_the_client() -> None:
    spec = load_programs(Settings()).get(SIG)
    neutral = spec.schema.neutral_inputs
    module = fewshot_program(spec, 8)
    fit, counter = _fit(n_ctx=400)
    assert fit.check(module, {"text": "where is my card"}, neutral) is None
    assert counter.counted == 1  # the version's own prompt, counted once; the request's settled by bytes
    assert fit.check(module, {"text": "where is my card now"}, neutral) is None and counter.counted == 1
    refused = fit.check(module, {"text": "word " * 400}, neutral)
    assert refused is not None and refused.field == "text" and refused.tokens > refused.limit == 336
    crowded = fewshot_program(spec, 8)
    crowded.predictors()[0].signature = crowded.predictors()[0].signature.with_instructions("rule " * 500)
    assert fit.check(crowded, {"text": "word " * 400}, neutral) is None  # its own prompt overflows: counted on it
    assert invalid_text({"text": "ok", "tags": ["fine", {"k": "\ud800"}]}).field == "tags"
    assert invalid_text({"text": "café 中文 🙂"}) is None
