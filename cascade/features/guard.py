"""A bounded user-feature fetch: time budget + circuit breaker around any user reader.

The ``user_features`` stage must never hang a request on the feature store (issue 18). A read
that raises :class:`~cascade.errors.UnavailableError` (including the client's socket timeout), is
late, or is refused by the open circuit gives a :class:`GuardResult` with ``features=None`` and a
``reason``, and the stage answers that request degraded (cold start -> popular items,
``degraded = true``, ``cascade_degraded_total{reason}``). Two ways to bound a read:

- **inline** (readers with ``bounded_by_client_timeouts = True``: the Feast readers on Redis, whose
  client gets socket/connect timeouts of one budget and no retries): the
  read runs on the request's thread; the client's timeouts bound it (about one budget per socket
  operation). No thread handoff: on a busy 2-core box the handoff alone cost 2-8 ms per read
  (p50/p90 at load ~7) and pushed healthy reads past a 20 ms budget. A read that answers is used
  even when a busy CPU made it late.
- **worker** (any other reader, SQLite included: a read can wait on a writer's lock for sqlite3's
  5 s busy timeout): the read runs on one worker thread and the request waits at most
  ``budget_ms``. The worker never queues behind a read that is still stuck: while one is running,
  further calls degrade at once (``reason="timeout"``) instead of waiting.

Circuit breaker: fed by each read's own outcome when it ends (not by the request's wait): a read
that raises (store down, the client's socket timeout, which serving sets to the budget) is a
failure; a read that answers is a success, even a late one (worker mode: after its request gave
up). So a busy CPU does not open the circuit for everyone, while a slow or absent store does.
After ``failure_threshold`` consecutive failures it opens; while open no read is attempted
(``reason="circuit_open"``, ~microseconds). After ``open_seconds`` ONE call is let through as a
half-open probe: success closes the circuit, failure opens it again. So a store that comes back is
used again within ``open_seconds`` + one read.

Configuration (:class:`GuardConfig`): stage parameters ``feature_budget_ms``,
``breaker_failures``, ``breaker_open_seconds`` in ``candidates/config.pbtxt`` (the stage that does
the Feast lookup), each overridable by the environment (``CASCADE_CANDIDATES_FEATURE_BUDGET_MS``,
... as every stage parameter) or by the shorter ``CASCADE_FEATURE_BUDGET_MS``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Callable, Generic, Protocol, Sequence, TypeVar

from cascade.errors import InvalidInputError, UnavailableError

LOG = logging.getLogger(__name__)
T = TypeVar("T")
BUDGET_ENV = "CASCADE_FEATURE_BUDGET_MS"

#: ``cascade_degraded_total{reason}`` values (the stage adds ``cold_start`` for unknown users)
REASON_TIMEOUT = "feature_store_timeout"
REASON_UNAVAILABLE = "feature_store_unavailable"
REASON_OPEN = "circuit_open"
REASONS = (REASON_TIMEOUT, REASON_UNAVAILABLE, REASON_OPEN)


@dataclass(frozen=True)
class GuardConfig:
    budget_ms: float = 20.0
    failure_threshold: int = 3
    open_seconds: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.budget_ms <= 10_000:
            raise InvalidInputError(f"feature_budget_ms must be in (0, 10000] ms, got {self.budget_ms}")
        if self.failure_threshold < 1:
            raise InvalidInputError(f"breaker_failures must be >= 1, got {self.failure_threshold}")
        if not 0 < self.open_seconds <= 600:
            raise InvalidInputError(f"breaker_open_seconds must be in (0, 600] s, got {self.open_seconds}")

    @classmethod
    def from_env(cls) -> "GuardConfig":
        """Defaults, with the budget from ``CASCADE_FEATURE_BUDGET_MS`` when set."""
        budget = os.environ.get(BUDGET_ENV)
        return cls(budget_ms=_number("feature_budget_ms", budget, float)) if budget else cls()

    @classmethod
    def from_parameters(cls, parameter: Callable[[str, str], str]) -> "GuardConfig":
        """From a stage's ``parameter(key, default)`` (config.pbtxt, overridden by the environment)."""
        defaults = cls()
        budget = os.environ.get(BUDGET_ENV) or parameter("feature_budget_ms", str(defaults.budget_ms))
        return cls(
            budget_ms=_number("feature_budget_ms", budget, float),
            failure_threshold=_number("breaker_failures", parameter("breaker_failures", str(defaults.failure_threshold)), int),
            open_seconds=_number("breaker_open_seconds", parameter("breaker_open_seconds", str(defaults.open_seconds)), float),
        )


#: offline / in-process use (evaluation, parity checks): no time-based degradation, no circuit
OFFLINE_GUARD = GuardConfig(budget_ms=10_000, failure_threshold=1_000_000, open_seconds=1.0)


def _number(name: str, value: str, kind: type) -> float:
    try:
        return kind(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None


class CircuitBreaker:
    """closed -> (N consecutive failures) -> open -> (open_seconds) -> half-open: one probe."""

    def __init__(self, failure_threshold: int, open_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self._probing else "open"

    def allow(self) -> bool:
        """True when a read may be attempted now (closed, or the one half-open probe)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._clock() - self._opened_at < self.open_seconds:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                LOG.warning("feature store answered again: circuit closed")
            self._failures, self._opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing or (self._opened_at is None and self._failures >= self.failure_threshold):
                if self._opened_at is None:
                    LOG.warning("feature store failed %d times in a row: circuit open", self._failures)
                self._opened_at = self._clock()
            self._probing = False


class UserReader(Protocol[T]):
    def get_many(self, user_ids: Sequence[int]) -> Sequence[T]: ...


@dataclass(frozen=True)
class GuardResult(Generic[T]):
    features: Sequence[T] | None  # None: degraded, see reason
    reason: str | None = None
    error: str | None = None
    elapsed_ms: float = 0.0


class FeatureGuard(Generic[T]):
    """Time budget + circuit breaker around ``reader.get_many`` (see the module docstring)."""

    def __init__(self, reader: UserReader[T], config: GuardConfig | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reader = reader
        self.config = config or GuardConfig()
        self.breaker = CircuitBreaker(self.config.failure_threshold, self.config.open_seconds, clock)
        #: the reader's own client timeouts bound each read (Redis socket/connect timeouts of one
        #: budget): read on the caller's thread, no worker handoff; otherwise the worker below
        self.inline = bool(getattr(reader, "bounded_by_client_timeouts", False))
        self._executor = None if self.inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix="cascade-feature-fetch")
        self._inflight: Future | None = None

    def get_many(self, user_ids: Sequence[int]) -> GuardResult[T]:
        if self.inline:
            return self._get_inline(user_ids)
        return self._get_on_worker(user_ids)

    def _get_inline(self, user_ids: Sequence[int]) -> GuardResult[T]:
        """The read on this thread, bounded by the client's timeouts (serving: the budget per
        socket operation). A read that answers is used even if it took longer than the budget (a
        busy CPU delayed it, the answer is good); one that raises degrades and counts as a failure."""
        start = time.perf_counter()
        if not self.breaker.allow():
            return GuardResult(None, REASON_OPEN, "feature store circuit open (recent failures)")
        try:
            features = self.reader.get_many(list(user_ids))
        except UnavailableError as exc:
            self.breaker.failure()
            reason = REASON_TIMEOUT if _is_timeout(exc) else REASON_UNAVAILABLE  # the client's socket timeout
            return GuardResult(None, reason, exc.message, _ms(start))
        except BaseException:  # not a store failure (a bad id, a bug): the caller sees it
            self.breaker.failure()
            raise
        self.breaker.success()
        return GuardResult(features, None, None, _ms(start))

    def _get_on_worker(self, user_ids: Sequence[int]) -> GuardResult[T]:
        """A reader without its own timeouts: on the worker thread, waiting at most the budget."""
        start = time.perf_counter()
        previous = self._inflight
        if previous is not None and not previous.done():  # a late read still holds the worker
            return GuardResult(None, REASON_TIMEOUT, "previous feature read still running", _ms(start))
        if not self.breaker.allow():
            return GuardResult(None, REASON_OPEN, "feature store circuit open (recent failures)")
        future = self._executor.submit(self.reader.get_many, list(user_ids))
        future.add_done_callback(self._record)  # the read's own outcome feeds the breaker, late or not
        self._inflight = future
        try:
            features = future.result(timeout=self.config.budget_ms / 1000.0)
        except FutureTimeout:
            return GuardResult(None, REASON_TIMEOUT,
                               f"feature read exceeded its {self.config.budget_ms:g} ms budget", _ms(start))
        except UnavailableError as exc:
            reason = REASON_TIMEOUT if _is_timeout(exc) else REASON_UNAVAILABLE  # e.g. the client's socket timeout
            return GuardResult(None, reason, exc.message, _ms(start))
        return GuardResult(features, None, None, _ms(start))

    def _record(self, future: Future) -> None:
        """Breaker bookkeeping when a read ends (in the worker thread). A read that answers, even
        after this request's budget, proves the store is up: success. One that raises is a failure
        (a store error, the client's socket timeout, or a bug the caller re-raises). A request that
        merely waited too long (a busy CPU, a GC pause) degrades alone and does not open the circuit
        for everyone; a store that is really slow or down fails its reads through the client's
        socket timeout (serving: the budget), so the circuit still opens for it."""
        if future.cancelled():
            return
        if future.exception() is None:
            self.breaker.success()
        else:
            self.breaker.failure()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _is_timeout(exc: BaseException | None) -> bool:
    """A timeout anywhere in the cause chain (builtin TimeoutError, redis.exceptions.TimeoutError)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError":
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
