"""Canaries against faulty treatments under load (issue 16): the long version of
tests/integration/test_experiments.py's canary tests.

    python -m benchmarks.canary_faults --out benchmarks/results/canary-faults.json
        [--steps 5,25,50,100] [--step-seconds 5] [--clients 3] [--workdir build/bench-router]

One real tritonserver (``running_bundle_server``), bundle A live; closed-loop gRPC clients
(``benchmarks.swap.ClosedLoop``, loopback) over 400 users. Two
canaries, each with its own salt: a copy of B whose business rules fail every 5th request (20 %),
and a copy of B that sleeps 2x the measured median latency per request (3x slower). Reports every
step, the rollback time, and the failed requests of users that were in the control at every step
(must be 0).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

RUN_LINE = "        rules = self.rules\n"  # the first line of ranking's per-request select()
FAULTY_CODE = ("        self._n = getattr(self, '_n', 0) + 1\n"
               "        if self._n > 12 and self._n % 5 == 0:  # after warm-up and the smoke set\n"
               "            raise RuntimeError('faulty treatment: every 5th request fails')\n")


def patched_bundle(base: Path, target: Path, bundle_id: str, code: str) -> Path:
    """A copy of export ``base`` as bundle ``bundle_id`` whose business rules (ranking's per-request
    ``select``) run ``code`` first."""
    from benchmarks.swap import rebrand
    from cascade.bundles.manifest import load_manifest, write_manifest

    out = rebrand(base, target, bundle_id)
    model_py = out / "model_repository/ranking/1/model.py"
    source = model_py.read_text()
    if RUN_LINE not in source:
        raise RuntimeError(f"{model_py}: cannot find where to inject the fault")
    model_py.write_text(source.replace(RUN_LINE, RUN_LINE + code, 1))
    write_manifest(out, bundle_id, load_manifest(base).code_version)
    return out


def run(workdir: Path, steps: list[float], step_seconds: float, clients: int, out: Path | None) -> dict[str, Any]:
    from benchmarks.swap import ClosedLoop, prepare
    from cascade.bundles.serve import running_bundle_server
    from cascade.experiments.canary import run_canary
    from cascade.experiments.guards import GuardSpec

    bundles = prepare(workdir, n_bundles=2)
    result: dict[str, Any] = {"clients": clients, "step_seconds": step_seconds, "steps": steps,
                              "note": "2 shared cores with other jobs running: latencies are noisy"}
    with running_bundle_server(workdir, bundles["A"]) as server:
        url = server.grpc_url
        with ClosedLoop(url, clients) as baseline:
            time.sleep(3.0)
        median = float(np.median([r.latency_ms for r in baseline.records])) / 1e3
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
            with ClosedLoop(url, clients) as load:
                report = run_canary(bundle, url, steps=steps, step_seconds=step_seconds, salt=salt,
                                    guard=GuardSpec.parse(spec), metrics_url=server.metrics_url, lock_dir=workdir)
            reached = report.steps[-1]["share"] if report.steps else steps[0]
            result[name] = {"guard": spec, "outcome": report.outcome, "reason": report.reason, "seconds": report.seconds,
                            "steps": report.steps, "requests": len(load.records), "failed": len(load.failures),
                            "failed_control_users": len(load.failures_of_control_users(salt, reached))}
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
