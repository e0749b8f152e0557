"""Closed-loop gRPC load: ``concurrency`` clients, each sending its next request as soon as the
previous answer arrives, spread over several processes (the GIL) that each run asyncio with
``tritonclient.grpc.aio``. Only answers that arrive inside the measured window count.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LevelSpec:
    url: str
    concurrency: int
    warmup_s: float
    duration_s: float
    user_ids: np.ndarray
    mix: dict[str, Any]  # RequestMix fields
    seed: int
    requests_per_client: int = 512  # pre-sampled, cycled


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts) if base + (1 if i < extra else 0)]


async def _run_clients(spec: LevelSpec, n_clients: int, proc_index: int, start_at: float) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc.aio import InferenceServerClient

    from loadtests.sampling import RequestMix, RequestSampler
    from loadtests.wire import MODEL_NAME, grpc_inputs

    client = InferenceServerClient(url=spec.url)
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("item_ids", "scores", "degraded")]
    begin = start_at + spec.warmup_s
    end = begin + spec.duration_s
    latencies: list[float] = []
    errors: list[str] = []  # first few messages
    counts = {"errors": 0}

    async def one(client_index: int) -> None:
        sampler = RequestSampler(spec.user_ids, RequestMix(**spec.mix),
                                 seed=spec.seed * 1_000_003 + proc_index * 1009 + client_index)
        reqs = [grpc_inputs(r) for r in sampler.take(spec.requests_per_client)]
        i = 0
        while True:
            sent = time.perf_counter()
            if sent >= end:
                return
            try:
                await client.infer(MODEL_NAME, reqs[i % len(reqs)], outputs=outputs)
                ok = True
            except Exception as exc:  # noqa: BLE001 - counted and reported
                ok = False
                if len(errors) < 5:
                    errors.append(str(exc)[:300])
            done = time.perf_counter()
            if begin <= sent and done <= end:
                if ok:
                    latencies.append((done - sent) * 1000.0)
                else:
                    counts["errors"] += 1
            i += 1

    delay = start_at - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    try:
        await asyncio.gather(*(one(i) for i in range(n_clients)))
    finally:
        await client.close()
    return {"latencies_ms": latencies, "errors": counts["errors"], "error_samples": errors}


def _process_main(spec: LevelSpec, n_clients: int, proc_index: int, barrier: Any, queue: Any) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    barrier.wait()
    start_at = time.perf_counter() + 0.2
    result = asyncio.run(_run_clients(spec, n_clients, proc_index, start_at))
    queue.put(result)


def run_level(spec: LevelSpec, processes: int) -> dict[str, Any]:
    """Run one concurrency level; returns latencies (ms) of the measured window, achieved rps
    and up to a few error messages."""
    shares = _split(spec.concurrency, max(1, min(processes, spec.concurrency)))
    ctx = mp.get_context("spawn")  # never fork a process that holds gRPC state
    barrier = ctx.Barrier(len(shares))
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_main, args=(spec, n, i, barrier, queue), daemon=True)
             for i, n in enumerate(shares)]
    for proc in procs:
        proc.start()
    limit = time.monotonic() + 60 + spec.warmup_s + spec.duration_s
    results = []
    try:
        for _ in procs:
            results.append(queue.get(timeout=max(1.0, limit - time.monotonic())))
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    latencies = np.concatenate([np.asarray(r["latencies_ms"], dtype=np.float64) for r in results])
    return {"latencies_ms": latencies, "rps": latencies.size / spec.duration_s,
            "errors": sum(r["errors"] for r in results),
            "error_samples": [e for r in results for e in r["error_samples"]][:5]}
