"""Closed-loop load that keeps every answer on a timeline (faults and soak runs).

``clients`` threads each send their next ``recommend`` request (gRPC, known users, k=10) as soon as
the previous answer arrives, with a per-request client deadline, and record ``(sent, done, ok,
degraded)``. :func:`summarize` turns a window of the timeline into the numbers of a fault row:
failed requests, degraded share, p50/p99/max latency and the time from the end of a fault to the
last degraded answer (after which every answer is full again).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Sample:
    sent: float  # time.monotonic()
    done: float
    ok: bool
    degraded: bool
    error: str = ""


@dataclass
class ClosedLoop:
    """``clients`` closed-loop gRPC clients over ``user_ids`` until :meth:`stop`."""

    url: str
    user_ids: Sequence[int]
    clients: int = 4
    deadline_s: float = 10.0
    seed: int = 0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> "ClosedLoop":
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.deadline_s + 5)
        return list(self.samples)

    def _client(self, index: int) -> None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        rng = np.random.default_rng(self.seed * 1009 + index)
        outputs = [grpcclient.InferRequestedOutput(n) for n in ("item_ids", "degraded")]
        try:
            while not self._stop.is_set():
                inputs = _inputs(grpcclient, int(rng.choice(self.user_ids)))
                sent = time.monotonic()
                try:
                    result = client.infer("recommend", inputs, outputs=outputs, client_timeout=self.deadline_s)
                    sample = Sample(sent, time.monotonic(), True, bool(result.as_numpy("degraded").reshape(-1)[0]))
                except Exception as exc:  # noqa: BLE001 - a failed request is data here
                    sample = Sample(sent, time.monotonic(), False, False, str(exc)[:200])
                with self._lock:
                    self.samples.append(sample)
        finally:
            client.close()


def _inputs(grpcclient, user_id: int) -> list:
    arrays = [("user_id", "INT64", np.array([user_id], np.int64)), ("top_k", "INT32", np.array([10], np.int32)),
              ("exclude_item_ids", "INT64", np.empty(0, np.int64)), ("explore", "FP32", np.zeros(1, np.float32))]
    inputs = []
    for name, dtype, value in arrays:
        tensor = grpcclient.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def summarize(samples: Sequence[Sample], start: float, end: float, fault_end: float | None = None) -> dict:
    """Numbers for the requests SENT in [start, end); ``fault_end``: when the fault was lifted."""
    window = [s for s in samples if start <= s.sent < end]
    latencies = np.array([(s.done - s.sent) * 1000.0 for s in window]) if window else np.zeros(0)
    failed = [s for s in window if not s.ok]
    degraded = [s for s in window if s.ok and s.degraded]
    out = {
        "requests": len(window),
        "failed": len(failed),
        "degraded": len(degraded),
        "degraded_share": round(len(degraded) / len(window), 4) if window else 0.0,
        "p50_ms": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else None,
        "max_ms": round(float(latencies.max()), 2) if len(latencies) else None,
        "error_samples": sorted({s.error for s in failed})[:3],
    }
    if fault_end is not None:
        out["full_answers_after_s"] = recovery_seconds(window, fault_end)
    return out


def recovery_seconds(samples: Sequence[Sample], fault_end: float) -> float | None:
    """Seconds from ``fault_end`` to the completion of the last degraded or failed answer sent
    after it (0.0 when every answer after it was full; None when none came after it)."""
    after = [s for s in samples if s.sent >= fault_end]
    if not after:
        return None
    bad = [s.done for s in after if not s.ok or s.degraded]
    return round(max(bad) - fault_end, 3) if bad else 0.0


def sustained_after(shares: list[float | None], tolerance: float = 0.05) -> float | None:
    """Seconds after the fault until every later 1 s bucket has at most ``tolerance`` degraded or
    failed answers (one stray late read at second 11 does not make the recovery 11 s long)."""
    for i in range(len(shares)):
        if all(x is None or x <= tolerance for x in shares[i:]):
            return float(i)
    return None


def degraded_timeline(samples: Sequence[Sample], start: float, seconds: float, bucket_s: float = 1.0) -> list[float | None]:
    """Degraded-or-failed share of the answers sent in each ``bucket_s`` bucket after ``start``."""
    shares = []
    for i in range(int(seconds / bucket_s)):
        window = [x for x in samples if start + i * bucket_s <= x.sent < start + (i + 1) * bucket_s]
        shares.append(round(sum((not x.ok) or x.degraded for x in window) / len(window), 3) if window else None)
    return shares

@dataclass
class ProbeTimeline:
    """Polls a readiness URL (``cascade serve --health-port``: ``.../ready``) every ``interval_s``
    like a kubelet would, keeping ``(time, ready)``; :meth:`summary` says when it flipped."""

    url: str
    interval_s: float = 0.1
    probes: list[tuple[float, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="probe-timeline", daemon=True)

    def start(self) -> "ProbeTimeline":
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, bool]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return list(self.probes)

    def _loop(self) -> None:
        import urllib.error
        import urllib.request

        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    ok = response.status == 200
            except (urllib.error.URLError, OSError):
                ok = False
            self.probes.append((time.monotonic(), ok))
            self._stop.wait(self.interval_s)

    def summary(self, fault_start: float) -> dict:
        """Seconds from ``fault_start`` to the first unready probe and to ready again after it,
        and whether any probe between those two said ready."""
        after = [(t, ok) for t, ok in self.probes if t >= fault_start]
        first_unready = next((t for t, ok in after if not ok), None)
        ready_again = next((t for t, ok in after if ok and first_unready is not None and t > first_unready), None)
        return {
            "unready_after_s": round(first_unready - fault_start, 2) if first_unready is not None else None,
            "ready_again_after_s": round(ready_again - fault_start, 2) if ready_again is not None else None,
            "probes": len(after),
        }
