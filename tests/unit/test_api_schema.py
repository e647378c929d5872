"""Every answer of the HTTP API is what ``/openapi.json`` documents: status, content type and body.

Regression tests for what fuzzing the API found (``tests/integration/test_api_fuzz.py``): each
request below was answered with a status, content type or body the schema did not document.
Bodies are checked with Schemathesis' own validator against the app's schema, on a real uvicorn
server with a scripted LM (no model).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dspy
import httpx
import pytest
import schemathesis
from dspy.lm15 import ServerError
from test_http_api import _wait_ready, intent_responder, running

from ratchet.config import Settings
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.serve import Runtime

PREDICT = "/v1/programs/classify_intent/predict"


@pytest.fixture
def api(tmp_path: Path, free_port) -> Iterator:
    """``with api(**engine_kwargs) as (url, check)``: a server, and ``check(method, path, response)``."""
    runtimes: list[Runtime] = []

    def start(**engine_kwargs):
        settings = Settings(home=tmp_path / "home")
        settings.serve.request_timeout_s = 0.5
        settings.serve.max_body_bytes = 4096
        engine = ScriptedEngine(intent_responder, **engine_kwargs)
        lm = dspy.LM("scripted/schema", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                     num_retries=0)
        runtime = Runtime(settings, lms=LMBundle.for_lm(lm, CompletionAdapter()))
        runtimes.append(runtime)
        return running(runtime, free_port())

    yield start
    for runtime in runtimes:
        runtime.close()


def checker(url: str):
    """``check(method, path, response)``: the status and media type are documented and the body fits the schema."""
    openapi = httpx.get(f"{url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(openapi)

    def check(method: str, path: str, response: httpx.Response) -> httpx.Response:
        documented = openapi["paths"][path][method.lower()]["responses"]
        status = str(response.status_code)
        assert status in documented, f"{method} {path}: {status} is not documented ({sorted(documented)})"
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in documented[status].get("content", {}), f"{method} {path} {status}: {media_type}"
        schema[path][method].validate_response(response)  # raises when the body does not fit its schema
        return response

    return check


def test_metrics_are_documented_as_text(api) -> None:
    """Found by fuzzing: /metrics answered text/plain while the schema said application/json."""
    with api() as url:
        check = checker(url)
        assert check("GET", "/metrics", httpx.get(f"{url}/metrics")).text.startswith("# HELP")


def test_validation_errors_are_documented_error_bodies(api) -> None:
    """Every 422 is an ErrorBody in the schema (it was FastAPI's {"detail": [...]}, which the server never sends)."""
    with api() as url:
        check = checker(url)
        openapi = httpx.get(f"{url}/openapi.json").json()
        for path in (PREDICT, "/v1/feedback"):
            assert openapi["paths"][path]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"}
        assert "HTTPValidationError" not in openapi["components"]["schemas"]
        for body in ({"inputs": {}}, {"inputs": {"text": 3}}, {"inputs": {"text": "x"}, "extra": 1}):
            answer = check("POST", PREDICT, httpx.post(f"{url}{PREDICT}", json=body))
            assert answer.status_code == 422 and answer.json()["error"] == "invalid_request"
        broken = httpx.post(f"{url}{PREDICT}", content=b"{", headers={"content-type": "application/json"})
        assert check("POST", PREDICT, broken).status_code == 422
        too_large = httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "x" * 5000}})
        assert check("POST", PREDICT, too_large).status_code == 413


def test_every_success_answer_fits_its_model(api) -> None:
    with api() as url:
        check = checker(url)
        assert _wait_ready(url).status_code == 200
        answer = check("POST", PREDICT, httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "card stolen"}}))
        assert answer.status_code == 200 and answer.json()["outputs"] == {"intent": "lost_or_stolen_card"}
        feedback = httpx.post(f"{url}/v1/feedback", json={"request_id": answer.json()["request_id"], "score": 1})
        assert check("POST", "/v1/feedback", feedback).status_code == 202 and feedback.json()["matched"]
        for path in ("/v1/programs", "/health", "/ready"):
            assert check("GET", path, httpx.get(f"{url}{path}")).status_code == 200


def test_failed_program_calls_answer_an_error_body(api) -> None:
    """A failed call is an ErrorBody with the call's request id, like every other error (it was the call's result
    with ``error_type``, which the schema did not document)."""
    with api(latency_s=2.0) as url:
        timeout = checker(url)("POST", PREDICT, httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "x"}},
                                                            timeout=10))
        assert timeout.status_code == 504 and timeout.json()["error"] == "timeout" and timeout.json()["request_id"]
    with api(error=ServerError("upstream down")) as url:
        failed = checker(url)("POST", PREDICT, httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "x"}}))
        assert failed.status_code == 502 and failed.json()["error"] == "lm_error"
        assert set(failed.json()) == {"error", "message", "request_id"}


def test_a_correction_must_be_the_outputs_of_a_program_served_here(api) -> None:
    """Found by fuzzing: the schema allowed any object as a correction, the server refused most with 422
    (a schema-valid request refused), and accepted anything for a request id it did not know."""
    with api() as url:
        check = checker(url)
        assert _wait_ready(url).status_code == 200
        served = httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "my card was stolen"}}).json()

        def feedback(correction):
            return check("POST", "/v1/feedback", httpx.post(f"{url}/v1/feedback", json={
                "request_id": served["request_id"], "score": 0.0, "correction": correction}))

        assert feedback({"intent": "card_arrival"}).status_code == 202
        other = feedback({"type": "feat"})  # classify_commit's outputs: well formed, but not this request's program
        assert other.status_code == 409 and other.json()["error"] == "correction_mismatch"
        assert other.json()["field"] == "correction.type" and "classify_intent" in other.json()["message"]
        nothing = feedback({"nonsense": "x" * 100})  # no program's outputs
        assert nothing.status_code == 422 and nothing.json()["field"] == "correction"
        unknown = check("POST", "/v1/feedback", httpx.post(f"{url}/v1/feedback", json={
            "request_id": "never-served", "score": 1, "correction": {"nonsense": 1}}))
        assert unknown.status_code == 422  # refused whether or not the request id is known
        wrong_value = feedback({"intent": "not_an_intent"})  # this program's field, a value it cannot answer
        assert wrong_value.status_code == 422 and wrong_value.json()["field"] == "correction.intent"


def test_a_rollback_documents_its_required_reason(api) -> None:
    """Found by fuzzing (the stateful phase followed GET /v1/experiments to a real experiment): the schema let a
    rollback go without a body, the server refused it with 422 (a rollback needs a reason)."""
    with api() as url:
        check = checker(url)
        openapi = httpx.get(f"{url}/openapi.json").json()
        rollback = openapi["paths"]["/v1/experiments/{experiment_id}/rollback"]["post"]
        assert rollback["requestBody"]["required"]
        body = openapi["components"]["schemas"][rollback["requestBody"]["content"]["application/json"]["schema"][
            "$ref"].rsplit("/", 1)[1]]
        assert body["required"] == ["reason"] and body["properties"]["reason"]["minLength"] == 1
        action = openapi["paths"]["/v1/experiments/{experiment_id}/{action}"]["post"]["parameters"]
        assert next(p for p in action if p["name"] == "action")["schema"]["enum"] == ["pause", "resume", "promote"]
        path = "/v1/experiments/{experiment_id}/rollback"
        bare = check("POST", path, httpx.post(f"{url}/v1/experiments/exp_1/rollback"))
        assert bare.status_code == 422 and bare.json()["field"] == "reason"
        unknown = check("POST", path, httpx.post(f"{url}/v1/experiments/exp_1/rollback", json={"reason": "bad"}))
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_experiment"


def test_predict_answers_link_to_feedback(api) -> None:
    """Feedback takes a request_id the service issued: the schema links predict's answer to it (so a client, and
    the fuzzer's stateful phase, can follow it; random ids are 404)."""
    with api() as url:
        openapi = httpx.get(f"{url}/openapi.json").json()
        link = openapi["paths"][PREDICT]["post"]["responses"]["200"]["links"]["feedback"]
        assert link["operationId"] == openapi["paths"]["/v1/feedback"]["post"]["operationId"]
        assert link["requestBody"] == {"request_id": "$response.body#/request_id"}


def test_a_deletion_answer_fits_its_model(api) -> None:
    with api() as url:
        check = checker(url)
        assert _wait_ready(url).status_code == 200
        httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "card stolen"}, "user_id": "u-9"})
        deleted = check("DELETE", "/v1/users/{user_id}/data", httpx.delete(f"{url}/v1/users/u-9/data", timeout=60))
        assert deleted.status_code == 200 and deleted.json()["status"] == "ok" and "u-9" not in deleted.text
