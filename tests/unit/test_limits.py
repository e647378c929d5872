"""Issue 13, item 4: the logic of the limits — token buckets, the call gate, field lengths (no server here;
tests/unit/test_limits_http.py drives them through a real one)."""

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

from ratchet.config import Settings
from ratchet.config.limits import KeyLimitSettings, LimitsSettings, SignatureLimitSettings
from ratchet.errors import FieldTooLongError, OverloadedError, RateLimitedError
from ratchet.serve import call_gate, metrics
from ratchet.serve.call_gate import CallGate, call_limit
from ratchet.serve.field_limits import FieldLimits, length_of
from ratchet.serve.rate_limit import Client, RateLimiter, TokenBuckets, client_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- token buckets --------------------------------------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_says_when_the_next_token_comes() -> None:
    clock = Clock()
    buckets = TokenBuckets(max_keys=10, clock=clock)
    rate = 60 / 60.0  # one a second
    assert [buckets.take("a", rate, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", rate, 3) == pytest.approx(1.0)
    clock.now += 0.5
    assert buckets.take("a", rate, 3) == pytest.approx(0.5)  # half a token there: half a second to go
    clock.now += 0.5
    assert buckets.take("a", rate, 3) == 0.0
    assert buckets.take("b", rate, 3) == 0.0  # another client has its own bucket
    clock.now += 3600
    assert [buckets.take("a", rate, 3) for _ in range(4)][-1] > 0  # refilled to the burst, never beyond


def test_buckets_are_bounded_and_forget_the_least_recently_seen() -> None:
    clock = Clock()
    buckets = TokenBuckets(max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        buckets.take(key, 1.0, 1)
    buckets.take("a", 1.0, 1)  # a is seen again (and now empty)
    buckets.take("d", 1.0, 1)  # b goes
    assert len(buckets) == 3
    assert buckets.take("b", 1.0, 1) == 0.0  # forgotten: a full bucket again
    assert buckets.take("a", 1.0, 1) > 0  # remembered: still empty


def test_a_key_gets_its_own_rate_and_the_refusal_says_when_to_retry() -> None:
    settings = LimitsSettings(requests_per_minute=60, burst=2, keys={"batch": KeyLimitSettings(burst=5),
                                                                     "free": KeyLimitSettings(requests_per_minute=6)})
    clock = Clock()
    limiter = RateLimiter(settings, clock)
    assert limiter.rate_of(Client("key:1", "batch")) == (60, 5)
    assert limiter.rate_of(Client("key:2", "free")) == (6, 2)
    assert limiter.rate_of(Client("addr:10.0.0.1")) == (60, 2)
    before = metrics.RATE_LIMITED.labels("predict", "free")._value.get()
    free = Client("key:2", "free")
    assert limiter.check(free, "predict") is None and limiter.check(free, "predict") is None
    refused = limiter.check(free, "predict")
    assert isinstance(refused, RateLimitedError) and refused.retry_after_s == 10  # 6 a minute: one every 10 s
    assert metrics.RATE_LIMITED.labels("predict", "free")._value.get() == before + 1
    batch = Client("key:1", "batch")
    assert all(limiter.check(batch, "feedback") is None for _ in range(5))
    assert limiter.check(batch, "feedback") is not None


def test_a_rate_of_zero_is_not_limited() -> None:
    limiter = RateLimiter(LimitsSettings(requests_per_minute=0, burst=1))
    assert all(limiter.check(Client("addr:x"), "predict") is None for _ in range(1000))


def test_the_client_is_its_key_when_authenticated_else_its_address() -> None:
    anonymous = SimpleNamespace(state=SimpleNamespace(), client=SimpleNamespace(host="10.1.2.3"))
    assert client_of(anonymous) == Client("addr:10.1.2.3") and client_of(anonymous).label == "anonymous"
    keyed = SimpleNamespace(state=SimpleNamespace(principal=SimpleNamespace(key_id="k-9", name="ci")),
                            client=SimpleNamespace(host="10.1.2.3"))
    assert client_of(keyed) == Client("key:k-9", "ci") and client_of(keyed).label == "ci"
    off = SimpleNamespace(state=SimpleNamespace(principal=None), client=None)  # no principal, no peer address
    assert client_of(off) == Client("addr:unknown")
    local = SimpleNamespace(state=SimpleNamespace(principal=SimpleNamespace(key_id=None, name="local")),
                            client=SimpleNamespace(host="10.9.9.9"))  # keys not required, none shown
    assert client_of(local) == Client("addr:10.9.9.9")


# -- the call gate --------------------------------------------------------------------------------------------


def test_the_automatic_cap_follows_the_model() -> None:
    settings = Settings()
    assert call_limit(settings, embedded=True) == 4 * settings.lm.local.pool_size
    assert call_limit(settings, embedded=False) == 64
    settings.serve.max_concurrent_calls = 3
    assert call_limit(settings, embedded=True) == call_limit(settings, embedded=False) == 3


def test_threads_wait_for_a_slot_then_are_refused() -> None:
    gate = CallGate(limit=2, wait_s=0.2)
    release = threading.Event()
    peak, outcomes, lock = [0], [], threading.Lock()

    def call() -> None:
        try:
            with gate.slot():
                with lock:
                    peak[0] = max(peak[0], gate.active)
                release.wait(5)
            outcomes.append("ran")
        except OverloadedError as exc:
            outcomes.append(exc.retry_after_s)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.6)  # the three beyond the cap waited 0.2 s and were refused
    release.set()
    for thread in threads:
        thread.join(5)
    assert sorted(outcomes, key=str) == [1, 1, 1, "ran", "ran"] and peak[0] == 2
    assert gate.active == 0 and gate.waiting == 0


def test_a_freed_slot_goes_to_the_first_in_line() -> None:
    gate = CallGate(limit=1, wait_s=5)
    order: list[int] = []

    async def call(i: int, hold_s: float) -> None:
        async with gate.aslot():
            order.append(i)
            await asyncio.sleep(hold_s)

    async def main() -> None:
        first = asyncio.create_task(call(0, 0.2))
        await asyncio.sleep(0.02)
        waiting = [asyncio.create_task(call(i, 0.01)) for i in (1, 2, 3)]
        await asyncio.sleep(0.02)
        assert gate.waiting == 3 and gate.active == 1
        await asyncio.gather(first, *waiting)

    asyncio.run(main())
    assert order == [0, 1, 2, 3] and gate.active == 0


def test_a_waiter_refused_in_time_and_a_cancelled_one_give_their_places_back() -> None:
    gate = CallGate(limit=1, wait_s=0.1)

    async def main() -> None:
        hold = asyncio.Event()

        async def holder() -> None:
            async with gate.aslot():
                await hold.wait()

        task = asyncio.create_task(holder())
        await asyncio.sleep(0.01)
        with pytest.raises(OverloadedError):
            async with gate.aslot():
                pass
        gate.wait_s = 5
        cancelled = asyncio.create_task(_enter(gate))
        await asyncio.sleep(0.02)
        assert gate.waiting == 1
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        assert gate.waiting == 0
        hold.set()
        await task
        assert gate.active == 0
        async with gate.aslot():  # nothing leaked: the slot is free again
            assert gate.active == 1

    asyncio.run(main())
    assert gate.active == 0


async def _enter(gate: CallGate) -> None:
    async with gate.aslot():
        pass


def test_no_wait_refuses_at_once_and_the_retry_after_follows_call_durations(monkeypatch) -> None:
    gate = CallGate(limit=1, wait_s=0)
    with gate.slot():
        with pytest.raises(OverloadedError) as refused, gate.slot():
            pass
        assert refused.value.retry_after_s == 1  # no call finished yet: at least a second
        assert not gate.run_if_free(lambda: None)  # skippable work does not wait
    clock = Clock()
    monkeypatch.setattr(call_gate, "time", SimpleNamespace(perf_counter=clock))
    timed = CallGate(limit=1, wait_s=0)
    with timed.slot():
        clock.now += 2.5  # a call that took 2.5 s
    assert timed.retry_after_s() == 3
    ran: list[int] = []
    assert gate.run_if_free(ran.append, 1) and ran == [1] and gate.active == 0


# -- field lengths -------------------------------------------------------------------------------------------


def test_field_limits_default_per_signature_and_per_field() -> None:
    settings = LimitsSettings(max_field_chars=10, max_correction_chars=20, signatures={
        "classify_intent": SignatureLimitSettings(max_field_chars=5, fields={"text": 8})})
    limits = FieldLimits(settings)
    assert limits.limit_of("other", "text") == 10
    assert limits.limit_of("classify_intent", "text") == 8 and limits.limit_of("classify_intent", "notes") == 5
    assert limits.check("classify_intent", {"text": "x" * 8}) is None
    too_long = limits.check("classify_intent", {"notes": "ok", "text": "x" * 9})
    assert isinstance(too_long, FieldTooLongError)
    assert (too_long.field, too_long.length, too_long.limit) == ("text", 9, 8)
    listed = limits.check("other", {"items": ["aaaa", "bbbb"]})  # other values by their JSON form
    assert listed is not None and listed.field == "items" and listed.length == len('["aaaa", "bbbb"]')
    assert limits.check_correction(None) is None and limits.check_correction({"intent": "card"}) is None
    correction = limits.check_correction({"intent": "x" * 30})
    assert correction is not None and correction.field == "correction" and correction.limit == 20
    assert length_of("é" * 3) == 3  # characters, not bytes
