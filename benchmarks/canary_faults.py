"""Canaries against faulty treatments under load (issue 16): the long version of
tests/integration/test_experiments.py's canary tests.

    python -m benchmarks.canary_faults --out benchmarks/results/canary-faults.json
        [--steps 5,25,50,100] [--step-seconds 5] [--clients 3] [--workdir build/bench-router]

One real tritonserver, bundle A live; closed-loop gRPC clients (loopback) over 400 users. Two
canaries, each with its own salt: a copy of B whose business_logic fails every 5th request (20 %),
and a copy of B that sleeps 2x the measured median latency per request (3x slower). Reports every
step, the rollback time, and the failed requests of users that were in the control at every step
(must be 0).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RUN_LINE = "        self.clock.start()\n"
FAULTY_CODE = ("        self._n = getattr(self, '_n', 0) + 1\n"
               "        if self._n > 12 and self._n % 5 == 0:  # after warm-up and the smoke set\n"
               "            raise RuntimeError('faulty treatment: every 5th request fails')\n")


def patched_bundle(base: Path, target: Path, bundle_id: str, code: str) -> Path:
    """A copy of export ``base`` as bundle ``bundle_id`` whose business_logic runs ``code`` first."""
    from benchmarks.swap import rebrand
    from cascade.bundles.manifest import load_manifest, write_manifest

    out = rebrand(base, target, bundle_id)
    model_py = out / "model_repository/business_logic/1/model.py"
    source = model_py.read_text()
    if RUN_LINE not in source:
        raise RuntimeError(f"{model_py}: cannot find where to inject the fault")
    model_py.write_text(source.replace(RUN_LINE, RUN_LINE + code, 1))
    write_manifest(out, bundle_id, load_manifest(base).code_version)
    return out


@dataclass
class VariantLoad:
    """Closed-loop clients over users 0..399: (user, variant or None, latency s, error or None)."""

    url: str
    clients: int = 3
    records: list[tuple[int, str | None, float, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "VariantLoad":
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def _loop(self, seed: int) -> None:
        from cascade.client import RecommendClient
        from cascade.errors import CascadeError

        rng = np.random.default_rng(seed)
        with RecommendClient(self.url, timeout_s=30) as client:
            while not self._stop.is_set():
                user, start = int(rng.integers(0, 400)), time.perf_counter()
                try:
                    answer = client.recommend(user, k=10)
                    self.records.append((user, answer.variant, time.perf_counter() - start, None))
                except CascadeError as error:
                    self.records.append((user, None, time.perf_counter() - start, error.message))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def failures_of_control_users(self, salt: str, reached: float) -> list[str]:
        """Failed requests of users in the control at every step (bucket >= the largest share reached)."""
        from cascade.experiments.assign import bucket

        return [e for user, _, _, e in self.records if e is not None and bucket(user, salt) >= reached]


def run(workdir: Path, steps: list[float], step_seconds: float, clients: int, out: Path | None) -> dict[str, Any]:
    from benchmarks.swap import prepare
    from cascade.bundles.rollout import rollout
    from cascade.bundles.serve import bundle_server_config, prepare_repository
    from cascade.experiments.canary import run_canary
    from cascade.experiments.guards import GuardSpec
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer

    bundles = prepare(workdir, n_bundles=2)
    http, grpc, metrics = free_ports(3)
    server = TritonServer(bundle_server_config(prepare_repository(workdir / "repository"), http_port=http,
                                               grpc_port=grpc, metrics_port=metrics, log_file=workdir / "triton.log",
                                               exit_timeout_s=5))
    server.start()
    result: dict[str, Any] = {"clients": clients, "step_seconds": step_seconds, "steps": steps,
                              "note": "2 shared cores with other jobs running: latencies are noisy"}
    try:
        server.wait_until_ready(120)
        url = server.grpc_url
        rollout(bundles["A"], url, grace_s=0.0, lock_dir=workdir)
        with VariantLoad(url, clients) as baseline:
            time.sleep(3.0)
        median = float(np.median([r[2] for r in baseline.records]))
        result["baseline_median_ms"] = median * 1e3
        cases = {
            "faulty_20pct": (patched_bundle(bundles["B"], workdir / "faulty", "faulty-20pct", FAULTY_CODE),
                             "error_rate<=0.01,p99_ratio<=3,min_requests=20"),
            "slow_3x": (patched_bundle(bundles["B"], workdir / "slow", "slow-3x",
                                       f"        __import__('time').sleep({2 * median:.4f})\n"),
                        "error_rate<=0.01,p50_ratio<=1.8,min_requests=20"),
        }
        for i, (name, (bundle, spec)) in enumerate(cases.items()):
            salt = f"bench{i}"
            with VariantLoad(url, clients) as load:
                report = run_canary(bundle, url, steps=steps, step_seconds=step_seconds, salt=salt,
                                    guard=GuardSpec.parse(spec), metrics_url=server.metrics_url, lock_dir=workdir)
            reached = report.steps[-1]["share"] if report.steps else steps[0]
            result[name] = {"guard": spec, "outcome": report.outcome, "reason": report.reason, "seconds": report.seconds,
                            "steps": report.steps, "requests": len(load.records),
                            "failed": sum(e is not None for *_, e in load.records),
                            "failed_control_users": len(load.failures_of_control_users(salt, reached))}
    finally:
        server.stop()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str))
    return result


def main() -> None:
    from cascade.experiments.canary import parse_steps

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/bench-router"))
    parser.add_argument("--steps", default="5,25,50,100")
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.workdir, parse_steps(args.steps), args.step_seconds, args.clients, args.out)
    for name in ("faulty_20pct", "slow_3x"):
        case = result[name]
        print(f"{name}: {case['outcome']} ({case['reason']}); {case['requests']} requests, {case['failed']} failed, "
              f"{case['failed_control_users']} of control users; rollback {case['seconds'].get('rollback_to_switched')} s")


if __name__ == "__main__":
    main()
