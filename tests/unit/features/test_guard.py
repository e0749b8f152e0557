"""The bounded user-feature fetch: time budget, circuit breaker, half-open probe (cascade.features.guard).

The readers here are small real objects (a reader that sleeps, one that raises) standing in for a
store; the Redis-backed behaviour is in test_redis.py against a real redis-server."""

from __future__ import annotations

import threading
import time

import pytest

from cascade.errors import InvalidInputError, UnavailableError
from cascade.features.guard import (
    REASON_OPEN,
    REASON_TIMEOUT,
    REASON_UNAVAILABLE,
    CircuitBreaker,
    FeatureGuard,
    GuardConfig,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Reader:
    """Answers ids doubled; ``mode`` switches it to slow (sleeps) or down (raises Unavailable)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.release = threading.Event()

    def get_many(self, ids):
        self.calls += 1
        if self.mode == "slow":
            self.release.wait(5)
        if self.mode == "down":
            raise UnavailableError("connection refused")
        if self.mode == "bug":
            raise KeyError("boom")
        return [2 * i for i in ids]


def test_breaker_opens_after_n_failures_and_probes_once() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=1.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 0.99
    assert not breaker.allow()
    clock.now += 0.02
    assert breaker.allow()  # the one half-open probe
    assert breaker.state == "half_open" and not breaker.allow()  # nobody else meanwhile
    breaker.failure()  # probe failed: open again, for a full period
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 1.01
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, open_seconds=1.0, clock=Clock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state == "closed"


def test_guard_answers_and_degrades_within_its_budget() -> None:
    reader = Reader()
    guard = FeatureGuard(reader, GuardConfig(budget_ms=30, failure_threshold=2, open_seconds=0.2))
    try:
        assert guard.get_many([1, 2]).features == [2, 4]
        reader.mode = "slow"
        start = time.perf_counter()
        result = guard.get_many([3])
        elapsed = time.perf_counter() - start
        assert result.features is None and result.reason == REASON_TIMEOUT and "30 ms budget" in result.error
        assert elapsed < 1.0  # bounded by the budget, not by the 5 s the read would take
        # the worker is still stuck in that read: the next call degrades at once instead of queueing
        start = time.perf_counter()
        result = guard.get_many([4])
        assert result.reason == REASON_TIMEOUT and "still running" in result.error
        assert time.perf_counter() - start < 0.02 and reader.calls == 2
        # nothing has FAILED yet (the read is only late): the circuit stays closed for now
        assert guard.breaker.state == "closed"
        reader.mode = "down"
        reader.release.set()  # the stuck read ends in a store error ...
        _wait_until(lambda: guard._inflight.done())
        reader.release.clear()
        assert guard.get_many([5]).reason == REASON_UNAVAILABLE  # ... and so does the next: 2 failures
        assert guard.breaker.state == "open"
        assert guard.get_many([6]).reason == REASON_OPEN
        calls = reader.calls
        reader.mode = "ok"
        time.sleep(0.25)  # open_seconds: the next call is the probe
        assert guard.get_many([7]).features == [14]
        assert guard.breaker.state == "closed" and reader.calls == calls + 1
    finally:
        reader.release.set()
        guard.close()


def test_a_late_answer_degrades_its_request_but_keeps_the_circuit_closed() -> None:
    """A busy CPU or a GC pause makes a read miss its request's budget although the store is fine:
    that request degrades alone; the late success keeps the circuit closed for the next ones."""
    reader = Reader()
    guard = FeatureGuard(reader, GuardConfig(budget_ms=20, failure_threshold=1, open_seconds=60))
    try:
        for n in range(3):
            reader.mode = "slow"
            assert guard.get_many([n]).reason == REASON_TIMEOUT
            reader.release.set()  # the store answers, after the budget
            _wait_until(lambda: guard._inflight.done())
            reader.release.clear()
            assert guard.breaker.state == "closed"  # threshold 1: a single failure would have opened it
            reader.mode = "ok"
            assert guard.get_many([n]).features == [2 * n]
    finally:
        reader.release.set()
        guard.close()


def _wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_guard_counts_unavailable_and_lets_other_errors_through() -> None:
    reader = Reader()
    guard = FeatureGuard(reader, GuardConfig(budget_ms=500, failure_threshold=3, open_seconds=5))
    try:
        reader.mode = "down"
        assert guard.get_many([1]).reason == REASON_UNAVAILABLE
        reader.mode = "bug"
        with pytest.raises(KeyError):
            guard.get_many([1])
        reader.mode = "down"
        result = guard.get_many([1])
        assert result.reason == REASON_UNAVAILABLE and "connection refused" in result.error
        assert guard.breaker.state == "open"
        assert guard.get_many([1]).reason == REASON_OPEN
    finally:
        guard.close()


@pytest.mark.parametrize(("field", "value"), [("budget_ms", 0), ("failure_threshold", 0), ("open_seconds", -1)])
def test_bad_guard_settings_are_named(field: str, value: float) -> None:
    with pytest.raises(InvalidInputError, match="must be"):
        GuardConfig(**{field: value})


def test_guard_config_from_stage_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CASCADE_FEATURE_BUDGET_MS", raising=False)
    params = {"feature_budget_ms": "35", "breaker_failures": "4"}
    config = GuardConfig.from_parameters(lambda key, default: params.get(key, default))
    assert (config.budget_ms, config.failure_threshold, config.open_seconds) == (35.0, 4, 0.5)
    monkeypatch.setenv("CASCADE_FEATURE_BUDGET_MS", "12.5")
    assert GuardConfig.from_parameters(lambda key, default: params.get(key, default)).budget_ms == 12.5
    with pytest.raises(InvalidInputError, match="breaker_failures must be an integer"):
        GuardConfig.from_parameters(lambda key, default: "x" if key == "breaker_failures" else default)


class BoundedReader(Reader):
    """A reader whose client bounds its own reads (as the Feast readers' Redis client does)."""

    bounded_by_client_timeouts = True

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s

    def get_many(self, ids):
        time.sleep(self.delay_s)
        return super().get_many(ids)


def test_a_self_bounded_reader_is_read_inline_and_a_late_answer_is_used() -> None:
    reader = BoundedReader(delay_s=0.05)  # a busy CPU: 50 ms for a read with a 20 ms budget
    guard = FeatureGuard(reader, GuardConfig(budget_ms=20, failure_threshold=1, open_seconds=60))
    try:
        assert guard.inline and guard._executor is None
        result = guard.get_many([3])
        assert result.features == [6] and result.reason is None and result.elapsed_ms >= 50
        assert guard.breaker.state == "closed"
        reader.delay_s, reader.mode = 0.0, "down"  # the client's error (e.g. its socket timeout)
        result = guard.get_many([4])
        assert result.reason == REASON_UNAVAILABLE and guard.breaker.state == "open"
        assert guard.get_many([5]).reason == REASON_OPEN and reader.calls == 2  # no read while open
    finally:
        guard.close()
