import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dspy
import pytest
from dspy.lm15 import ServerError

from ratchet.config import Settings
from ratchet.errors import UnknownProgramError
from ratchet.evaluation import fewshot_program
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.serve import Runtime, instrument, metrics
from ratchet.store.db import StateDB
from ratchet.store.jsonl import read_jsonl
from ratchet.store.outcomes import read_arm_stats

DAY = 86400.0


def scripted(responder, **kwargs) -> tuple[dspy.LM, ScriptedEngine]:
    engine = ScriptedEngine(responder, **kwargs)
    return dspy.LM("scripted/t", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                   num_retries=0), engine


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator:
    made: list[Runtime] = []

    def make(responder=lambda p: " card_arrival", *, sampling: float = 0.0, fallback=None, database_url=None,
             **engine_kwargs) -> Runtime:
        settings = Settings(home=tmp_path / "home", database_url=database_url)
        settings.telemetry.sampling_rate = sampling
        settings.serve.routing_check_interval_s = 0.05
        settings.serve.request_timeout_s = 0.5
        settings.rollout.start_in_shadow = False
        lm, _ = scripted(responder, **engine_kwargs)
        bundle = LMBundle.for_lm(lm, CompletionAdapter(), fallback=fallback)
        runtime = Runtime(settings, lms=bundle)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


def test_a_call_reports_what_happened(make_runtime) -> None:
    runtime = make_runtime()
    result = runtime.call("classify_intent", {"text": "Where is my card?"}, request_id="r-1")
    assert result.success and result.outputs == {"intent": "card_arrival"}
    assert (result.arm, result.version) == ("baseline", "base")
    assert runtime.request_ids.issued(result.request_id) and "r-1" not in result.request_id
    assert result.tokens_in > 0 and result.tokens_out > 0
    assert result.cost_usd is None  # a scripted model has no known price
    assert result.latency_ms > 0 and result.error_type is None and not result.sampled
    assert result.to_dict()["tokens"] == {"input": result.tokens_in, "output": result.tokens_out}


def test_unknown_signature_raises(make_runtime) -> None:
    with pytest.raises(UnknownProgramError):
        make_runtime().call("nope", {"text": "x"})


@pytest.mark.parametrize(
    ("responder", "error", "error_type"),
    [
        (lambda p: " not an intent", None, "parse_error"),
        (lambda p: " x", ServerError("upstream 500"), "lm_error"),
        (lambda p: " x", RuntimeError("engine crashed"), "lm_error"),  # DSPy wraps engine failures
    ],
)
def test_failures_are_typed_not_raised(make_runtime, responder, error, error_type) -> None:
    runtime = make_runtime(responder, error=error)
    result = runtime.call("classify_intent", {"text": "hi"})
    assert not result.success and result.error_type == error_type
    assert result.outputs is None
    with pytest.raises(BaseException):  # noqa: B017 - re-raises whatever failed
        result.raise_for_error()


def test_a_bug_in_the_program_is_internal(make_runtime) -> None:
    class Broken(dspy.Module):
        def __init__(self):
            super().__init__()
            self.predict = dspy.Predict("question -> answer")

        def forward(self, question):
            raise KeyError("bug in the program")

    runtime = make_runtime()
    wrapped = instrument(Broken(), signature="broken_program", runtime=runtime)
    try:
        result = runtime.call("broken_program", {"question": "?"})
        assert result.error_type == "internal" and "bug in the program" in result.error
        with pytest.raises(KeyError):
            wrapped(question="?")
    finally:
        runtime.registry.unregister("broken_program")


def test_invalid_inputs_name_the_field(make_runtime) -> None:
    result = make_runtime().call("classify_intent", {"txt": "hi"})
    assert result.error_type == "invalid_request"
    assert "unknown input field 'txt'" in result.error


def test_fallback_model_answers_when_the_task_model_fails(make_runtime) -> None:
    fallback, fallback_engine = scripted(lambda p: " pin_blocked")
    runtime = make_runtime(error=ServerError("primary down"), fallback=fallback)
    before = metrics.FALLBACKS.labels("classify_intent")._value.get()
    result = runtime.call("classify_intent", {"text": "pin"})
    assert result.success and result.fallback_used and result.outputs == {"intent": "pin_blocked"}
    assert result.model == "scripted/t" and fallback_engine.calls == 1
    assert metrics.FALLBACKS.labels("classify_intent")._value.get() == before + 1


def test_async_timeout(make_runtime) -> None:
    runtime = make_runtime(latency_s=2.0)
    result = asyncio.run(runtime.acall("classify_intent", {"text": "slow"}, timeout_s=0.2))
    assert result.error_type == "timeout" and result.latency_ms < 1500


def test_routing_sends_a_share_of_users_to_the_candidate(make_runtime, tmp_path: Path) -> None:
    """Routing follows the live experiment in the state database (started, advanced, rolled back)."""
    from ratchet.rollout import RolloutController

    runtime = make_runtime()
    spec = runtime.registry.get("classify_intent")
    VersionStore(tmp_path / "home").save(spec, fewshot_program(spec, 3), lm="m", adapter="a")
    controller = RolloutController(runtime.settings, runtime.registry, db=runtime.db)
    exp = controller.start("classify_intent", "v1", experiment_id="exp_1", stages=[25, 50, 100])
    runtime.follower.refresh()

    users = [f"user-{i}" for i in range(300)]
    first = {u for u in users if runtime.call("classify_intent", {"text": "x"}, user_id=u).arm == "candidate"}
    assert 0.15 < len(first) / len(users) < 0.35
    controller.store.transition(exp, "advance", actor="t", changes={"stage_index": 1}, reason="t")
    runtime.follower.refresh()
    results = {u: runtime.call("classify_intent", {"text": "x"}, user_id=u) for u in users}
    second = {u for u, r in results.items() if r.arm == "candidate"}
    assert first <= second and 0.4 < len(second) / len(users) < 0.6
    assert {r.version for r in results.values() if r.arm == "candidate"} == {"v1"}
    assert {r.version for r in results.values() if r.arm == "baseline"} == {"base"}
    controller.rollback("exp_1", reason="t")
    runtime.follower.refresh()
    assert all(runtime.call("classify_intent", {"text": "x"}, user_id=u).arm == "baseline" for u in second)


def test_a_routing_file_is_never_obeyed_and_a_forged_one_is_repaired(make_runtime, tmp_path: Path) -> None:
    """An unsigned file sending everything to a version that does not exist: ignored, rewritten, counted."""
    import json

    from ratchet.routing import read_routing

    runtime = make_runtime()
    path = tmp_path / "home" / "routing_config.json"
    forged = {"version": 99, "signatures": {"classify_intent": {"baseline_version": "v7", "candidate_version": "v9",
                                                                "candidate_share": 1.0, "salt": "s"}}}
    path.write_text(json.dumps(forged))
    repairs = metrics.ROUTING_FILE_REPAIRS.labels("invalid")._value.get()
    runtime.follower.refresh()
    result = runtime.call("classify_intent", {"text": "x"})
    assert (result.arm, result.version, result.success) == ("baseline", "base", True)
    assert read_routing(path).signatures == {}  # rewritten from the database (no live experiment)
    assert metrics.ROUTING_FILE_REPAIRS.labels("invalid")._value.get() == repairs + 1
    assert runtime.follower.repairs == 1


def test_an_unreadable_database_keeps_the_last_verified_state_and_counts(make_runtime, tmp_path: Path,
                                                                          monkeypatch) -> None:
    from ratchet.rollout import RolloutController

    runtime = make_runtime()
    spec = runtime.registry.get("classify_intent")
    VersionStore(tmp_path / "home").save(spec, fewshot_program(spec, 3), lm="m", adapter="a")
    RolloutController(runtime.settings, runtime.registry, db=runtime.db).start(
        "classify_intent", "v1", experiment_id="exp_1", stages=[100])
    runtime.follower.refresh()
    assert runtime.call("classify_intent", {"text": "x"}).arm == "candidate"
    errors_before = metrics.ROUTING_RELOAD_ERRORS._value.get()

    def down(**kwargs):
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(runtime.follower.experiments, "list", down)
    assert runtime.follower.refresh() is False
    assert runtime.call("classify_intent", {"text": "x"}).arm == "candidate"  # the last verified state
    assert metrics.ROUTING_RELOAD_ERRORS._value.get() == errors_before + 1
    assert runtime.follower.last_error == "database unreachable"


def test_a_missing_production_version_is_an_error_result_counted_per_arm(make_runtime, tmp_path: Path) -> None:
    import shutil

    from ratchet.programs.production import ProductionPointers

    runtime = make_runtime()
    spec = runtime.registry.get("classify_intent")
    versions = VersionStore(tmp_path / "home")
    versions.save(spec, fewshot_program(spec, 3), lm="m", adapter="a")
    ProductionPointers(runtime.db, versions).set("classify_intent", "v1", actor="t", reason="t")
    shutil.rmtree(tmp_path / "home" / "programs" / "classify_intent" / "v1")  # its files are gone
    runtime.follower.refresh()
    result = runtime.call("classify_intent", {"text": "x"})
    assert not result.success and result.error_type == "version_unavailable" and result.version == "v1"
    assert "no version 'v1'" in result.error
    runtime.flush()
    stats = read_arm_stats(runtime.db, "classify_intent")[("v1", "baseline")]
    assert stats.requests == 1 and stats.errors_by_type == {"version_unavailable": 1}


def test_sampling_redacts_before_writing(make_runtime, tmp_path: Path) -> None:
    runtime = make_runtime(sampling=1.0)
    result = runtime.call("classify_intent", {"text": "card 4111 1111 1111 1111, mail jo@example.com"})
    assert result.sampled
    runtime.feedback(result.request_id, 0.0, correction={"intent": "lost_or_stolen_card"})
    runtime.flush()
    records, stats = read_jsonl(tmp_path / "home" / "telemetry" / "interactions.jsonl")
    assert stats.bad_lines == 0
    interaction, feedback = records
    assert interaction["input"]["text"] == "card [CARD], mail [EMAIL]"
    assert interaction["request_id"] == result.request_id and interaction["arm"] == "baseline"
    assert len(interaction["program_fingerprint"]) == 64
    assert feedback["record"] == "feedback" and feedback["correction"] == {"intent": "lost_or_stolen_card"}


def test_sampling_zero_writes_nothing(make_runtime, tmp_path: Path) -> None:
    runtime = make_runtime(sampling=0.0)
    for _ in range(50):
        assert not runtime.call("classify_intent", {"text": "x"}).sampled
    runtime.flush()
    assert not (tmp_path / "home" / "telemetry" / "interactions.jsonl").exists()


def test_counters_are_exact_under_threads_and_asyncio(make_runtime) -> None:
    runtime = make_runtime(lambda p: " pin_blocked" if "bad" not in p.rsplit("Text:", 1)[-1] else " ???")
    runtime.settings.serve.request_timeout_s = 60.0  # 100 queued async calls on a busy 2-core machine: no timeouts

    def worker(n: int) -> None:
        for i in range(25):
            runtime.call("classify_intent", {"text": "bad" if i % 5 == 0 else "ok"}, request_id=f"t{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def many() -> None:
        await asyncio.gather(*(runtime.acall("classify_intent", {"text": "ok"}) for _ in range(100)))

    asyncio.run(many())
    runtime.flush()
    stats = read_arm_stats(runtime.db, "classify_intent")[("base", "baseline")]
    assert stats.requests == 8 * 25 + 100
    assert stats.errors_by_type == {"parse_error": 8 * 5}


def test_feedback_reaches_quality_from_any_process(make_runtime, tmp_path: Path) -> None:
    runtime = make_runtime()
    result = runtime.call("classify_intent", {"text": "x"})
    direct = runtime.feedback(result.request_id, 0.25)
    assert direct.matched and direct.arm == "baseline"
    other = make_runtime()  # another worker: same home and database, its own memory
    second = runtime.call("classify_intent", {"text": "y"})
    elsewhere = other.feedback(second.request_id, 0.75)  # before the first worker flushed its index
    assert not elsewhere.matched
    runtime.flush()
    stats = read_arm_stats(runtime.db, "classify_intent")[("base", "baseline")]
    assert stats.quality_count == 2 and stats.quality_mean == pytest.approx(0.5)
    assert other.feedback(second.request_id, 1.0).matched  # now visible in the database; latest score wins
    assert read_arm_stats(runtime.db, "classify_intent")[("base", "baseline")].quality_mean == pytest.approx(0.625)


def test_feedback_is_accepted_for_serve_request_index_days(make_runtime) -> None:
    runtime = make_runtime()
    runtime.settings.serve.request_index_days = 2.0
    now = time.time()
    old, recent, unseen = (runtime.request_ids.issue() for _ in range(3))
    runtime.outcomes.index_request(old, "classify_intent", "base", "baseline", at=now - 2.1 * DAY)
    runtime.outcomes.index_request(recent, "classify_intent", "base", "baseline", at=now - 1.9 * DAY)
    late = runtime.feedback(old, 1.0)  # refused before and after the index reaches the database
    runtime.flush()
    assert runtime.feedback(old, 1.0) == late
    assert (late.accepted, late.matched, late.arm) == (False, True, "baseline")
    assert "served 2.1 days ago" in late.reason and "2 days (serve.request_index_days)" in late.reason
    on_time = runtime.feedback(recent, 0.5)
    assert (on_time.accepted, on_time.matched, on_time.reason) == (True, True, None)
    assert runtime.feedback(unseen, 0.5).accepted  # issued, not indexed yet (another worker): stored
    stats = read_arm_stats(runtime.db, "classify_intent")[("base", "baseline")]
    assert (stats.quality_count, stats.quality_mean) == (1, 0.5)  # the late score was never stored
    runtime.settings.serve.request_index_days = 3.0
    assert runtime.feedback(old, 1.0).accepted


def test_feedback_is_validated(make_runtime) -> None:
    from ratchet.errors import InputValidationError

    runtime = make_runtime()
    result = runtime.call("classify_intent", {"text": "x"})
    with pytest.raises(InputValidationError, match="between 0 and 1"):
        runtime.feedback(result.request_id, 1.5)
    with pytest.raises(InputValidationError, match="output field 'intent'"):
        runtime.feedback(result.request_id, 1.0, correction={"intent": "not_an_intent"})


def test_counters_in_postgresql_and_sqlite(make_runtime, state_db_url: str) -> None:
    runtime = make_runtime(database_url=state_db_url)
    ids = [runtime.call("classify_intent", {"text": "x"}, request_id=f"pg-{i}").request_id for i in range(20)]
    runtime.feedback(ids[3], 1.0)
    runtime.flush()
    stats = read_arm_stats(StateDB(state_db_url), "classify_intent")[("base", "baseline")]
    assert stats.requests == 20 and stats.quality_count == 1


def test_instrument_wraps_an_existing_module(make_runtime) -> None:
    runtime = make_runtime(lambda p: " Paris")
    qa = dspy.Predict("question -> answer")
    wrapped = instrument(qa, signature="capital_question", runtime=runtime)
    try:
        prediction = wrapped(question="Capital of France?", user_id="u1")
        assert prediction.answer == "Paris"
        assert runtime.registry.get("capital_question").schema.input_names == ["question"]
        runtime.flush()
        assert read_arm_stats(runtime.db, "capital_question")[("base", "baseline")].requests == 1
        with pytest.raises(Exception, match="unknown input field"):
            wrapped(q="typo")
    finally:
        runtime.registry.unregister("capital_question")


def test_metrics_use_the_seed_names(make_runtime) -> None:
    runtime = make_runtime()
    runtime.call("classify_intent", {"text": "x"})
    text = metrics.render_latest().decode()
    assert 'dspy_requests_total{arm="baseline",module="Predict",signature="classify_intent"}' in text
    assert "dspy_request_duration_seconds_bucket" in text
    assert 'dspy_tokens_total{arm="baseline",module="Predict",signature="classify_intent",type="input"}' in text
    assert 'dspy_module_version{arm="baseline",module="Predict",signature="classify_intent",version="base"} 1.0' in text


def test_bundled_programs_load_for_serving() -> None:
    assert {"classify_intent", "extract_booking"} <= set(load_programs(Settings()).names())


def test_feedback_for_another_workers_request_reaches_telemetry_later(make_runtime, tmp_path: Path) -> None:
    serving = make_runtime(sampling=1.0)
    other = make_runtime(sampling=1.0)
    result = serving.call("classify_intent", {"text": "x"})
    assert not other.feedback(result.request_id, 0.5, {"intent": "pin_blocked"}).matched
    serving.flush()  # the serving worker's request index reaches the database
    other.close()  # runs the deferred match now instead of in a few seconds
    serving.flush()
    from ratchet.telemetry.writer import iter_log_files

    records = [r for path in iter_log_files(tmp_path / "home" / "telemetry") for r in read_jsonl(path)[0]]
    feedback = [r for r in records if r.get("record") == "feedback"]
    assert len(feedback) == 1 and feedback[0]["request_id"] == result.request_id
    assert feedback[0]["correction"] == {"intent": "pin_blocked"} and feedback[0]["signature"] == "classify_intent"


PII = {"card": "4111 1111 1111 1111", "dotted": "4111.1111.1111.1111", "mail": "jane.roe @ example.com",
       "spelled": "john dot doe at gmail dot com", "key": "sk-abcdefghijklmnopqrstuvwxyzABCD",
       "ssn": "123-45-6789", "iban": "DE89 3704 0044 0532 0130 00", "phone": "+44 20 7946 0958"}


def test_request_ids_and_corrections_reach_the_state_database_redacted(make_runtime, state_db_url: str) -> None:
    """Issue 13: nothing a client sends as a request id or a correction is stored raw (SQLite and PostgreSQL)."""
    from sqlalchemy import select

    from ratchet.errors import UnknownRequestError
    from ratchet.store.tables import feedback, request_index

    runtime = make_runtime(database_url=state_db_url)
    raw_id = "jane.roe@example.com"
    result = runtime.call("classify_intent", {"text": "x"}, request_id=raw_id)
    assert runtime.request_ids.issued(result.request_id) and "@" not in result.request_id
    retried = runtime.call("classify_intent", {"text": "x"}, request_id=raw_id)
    assert retried.request_id == result.request_id  # an idempotency key: a retry gets the same issued id
    other = runtime.call("classify_intent", {"text": "y"}, request_id="other@example.com")
    assert other.request_id != result.request_id  # different keys stay apart
    elsewhere = runtime.call("classify_intent", {"text": "x"}, request_id=raw_id, caller="key:other/0123")
    assert elsewhere.request_id != result.request_id  # one caller's key never names another caller's request
    with pytest.raises(UnknownRequestError, match="not issued by this service"):
        runtime.feedback(raw_id, 1.0)  # the client's own id is not a request id
    assert runtime.feedback(result.request_id, 0.5).matched
    runtime.feedback(runtime.request_ids.issue(), 0.5,
                     correction={**PII, "number": 4111111111111111, "nested": [PII["ssn"]]})
    runtime.flush()
    with StateDB(state_db_url) as db, db.begin() as conn:
        stored = [*conn.execute(select(feedback)), *conn.execute(select(request_index))]
    text = repr(stored)
    leaked = [name for name, value in {**PII, "raw_id": raw_id, "number": "4111111111111111"}.items() if value in text]
    assert leaked == []
    assert "[CARD]" in text and "[SSN]" in text and "[SECRET]" in text and "[EMAIL]" in text
