"""Bundle swaps under load (issue 12): one real tritonserver, closed-loop gRPC clients on
`recommend` (loopback), and the rollout/rollback commands' own code.

    python -m benchmarks.swap --out benchmarks/results/swap.json [--clients 4] [--rollouts 10]
        [--cycles 50] [--workdir build/bench-swap]

Phases: steady load; then under load ``--rollouts`` rollouts alternating bundles A and B, one
rollback, and three broken bundles (a corrupted ONNX file, a model.py that raises at load, a file
changed after export); then ``--cycles`` swap cycles that each LOAD a bundle and UNLOAD one
(rotating A -> B -> C, so every cycle is a real load + unload, the case where Triton is known to
leak), with the RSS of tritonserver + its Python stubs after each. Reports failed requests,
answers outside {A, B}, p50/p99 steady vs during swaps, rollout/rollback durations, RSS.
Bundles: a small synthetic dataset, trained once (cached under --workdir), exported three times
with different candidate counts (shared artifacts).
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks.latency import summarize

SMALL = dict(n_users=400, n_items=250, n_interactions=30_000, seed=7, test_fraction=0.2, n_categories=8, n_brands=20)


def rebrand(source: Path, target: Path, bundle_id: str) -> Path:
    """A copy of export ``source`` that is bundle ``bundle_id`` (ids in configs, warm-up tags,
    export.json, a fresh manifest): the base of a deliberately broken bundle."""
    from cascade.bundles.manifest import load_manifest, write_manifest
    from cascade.bundles.tagging import BUNDLE_INPUT_PREFIX, fingerprint

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    old = load_manifest(source)
    for config in (target / "model_repository").glob("*/config.pbtxt"):
        config.write_text(config.read_text().replace(old.bundle_id, bundle_id))
    for tag in (target / "model_repository").glob(f"*/warmup/{BUNDLE_INPUT_PREFIX}*"):
        np.array([fingerprint(bundle_id)], dtype=np.int64).tofile(tag)
    meta = json.loads((target / "export.json").read_text())
    (target / "export.json").write_text(json.dumps({**meta, "version": bundle_id}, indent=2))
    write_manifest(target, bundle_id, old.code_version)
    return target


def broken_bundles(base: Path, folder: Path) -> dict[str, Path]:
    """Three bundles that must never take traffic, built from export ``base``."""
    from cascade.bundles.manifest import load_manifest, write_manifest

    code = load_manifest(base).code_version
    onnx = rebrand(base, folder / "broken-onnx", "broken-onnx")
    (onnx / "artifacts/ranking/dlrm.onnx").write_bytes(b"not an onnx model")  # corrupted, then published
    write_manifest(onnx, "broken-onnx", code)
    raises = rebrand(base, folder / "broken-py", "broken-py")
    model_py = raises / "model_repository/ranking/1/model.py"
    model_py.write_text("raise RuntimeError('broken on purpose')\n" + model_py.read_text())
    write_manifest(raises, "broken-py", code)
    tampered = rebrand(base, folder / "tampered", "tampered")
    (tampered / "artifacts/index/item_ids.npy").write_bytes(b"changed after export")  # manifest not rewritten
    return {"broken_onnx": onnx, "broken_py": raises, "tampered": tampered}


def prepare(workdir: Path, n_bundles: int = 3) -> dict[str, Path]:
    """Dataset, artifacts (trained once) and exports A, B, C (+ broken ones) under ``workdir``."""
    from cascade.workflows.artifacts import TrainConfig, train_all
    from cascade.workflows.export import export_repository
    from cascade.workflows.synthetic import SyntheticConfig, generate
    from cascade.workflows.train_ranking import RankingTrainConfig
    from cascade.workflows.train_retrieval import RetrievalTrainConfig

    data = workdir / "data"
    if not (data / "dataset.json").is_file():
        generate(data, SyntheticConfig(**SMALL), name="swap", progress=False)
    config = TrainConfig(retrieval=RetrievalTrainConfig(epochs=2, progress=False),
                         ranking=RankingTrainConfig(epochs=1, progress=False))
    artifacts = train_all(data, workdir / "artifacts", config, progress=False, log=lambda _: None)[0].root
    exports = {}
    for name, n_candidates in zip("ABC", (300, 120, 200)[:n_bundles]):
        exports[name] = export_repository(data, workdir / f"export-{name}", artifacts_dir=artifacts,
                                          n_candidates=n_candidates).root
    return {**exports, **broken_bundles(exports["B"], workdir / "broken")}


class Answer(NamedTuple):
    """One request of a :class:`ClosedLoop`."""

    start: float  # time.time() when sent
    latency_ms: float
    bundle: str | None  # the bundle of the answer's model_version; None when it failed
    error: str | None  # the error message of a failed request
    user: int
    variant: str | None  # "control"/"treatment" (the router's answer); None when it failed


@dataclass
class ClosedLoop:
    """``clients`` threads over users 0..``n_users``-1, each sending its next `recommend` as soon as
    the last answer came; one :class:`Answer` per request in ``records``."""

    url: str
    clients: int = 4
    n_users: int = 400
    records: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "ClosedLoop":
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
                user, start = int(rng.integers(0, self.n_users)), time.time()
                try:
                    answer = client.recommend(user, k=10)
                    self.records.append(Answer(start, (time.time() - start) * 1e3,
                                               answer.model_version.split("+", 1)[0], None, user, answer.variant))
                except CascadeError as error:
                    self.records.append(Answer(start, (time.time() - start) * 1e3, None, error.message, user, None))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    @property
    def failures(self) -> list[str]:
        return [r.error for r in self.records if r.error is not None]

    @property
    def versions(self) -> list[str]:
        return [r.bundle for r in self.records if r.bundle is not None]

    def failures_of_control_users(self, salt: str, reached: float) -> list[str]:
        """Failed requests of users in the control at every step of a canary with ``salt``
        (bucket >= ``reached``, the largest treatment share reached)."""
        from cascade.experiments.assign import bucket

        return [r.error for r in self.records if r.error is not None and bucket(r.user, salt) >= reached]


def server_rss_mb(pid: int) -> float:
    """RSS of tritonserver ``pid`` and all its descendants (the Python-backend stubs), MiB."""
    import psutil

    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def _timed(fn, *args, **kwargs) -> tuple[float, Any, str | None]:
    from cascade.errors import CascadeError

    start = time.monotonic()
    try:
        result = fn(*args, **kwargs)
    except CascadeError as error:
        return time.monotonic() - start, None, error.message
    return time.monotonic() - start, result, None


def run(workdir: Path, clients: int, rollouts: int, cycles: int, steady_s: float, out: Path | None) -> dict[str, Any]:
    from cascade.bundles.manifest import load_manifest
    from cascade.bundles.rollout import rollback, rollout
    from cascade.bundles.serve import running_bundle_server
    from cascade.bundles.state import connect, read_state

    bundles = prepare(workdir)
    ids = {k: load_manifest(v).bundle_id for k, v in bundles.items()}
    result: dict[str, Any] = {"clients": clients, "bundles": {k: ids[k] for k in "ABC"},
                              "note": "2 shared cores, other engineers' jobs running: absolute numbers are noisy"}
    with running_bundle_server(workdir, None) as server:
        url = server.grpc_url
        result["first_rollout_s"] = rollout(bundles["A"], url, grace_s=0.0, lock_dir=workdir).seconds
        result["rss_mb_start"] = server_rss_mb(server.pid)

        with ClosedLoop(url, clients) as steady:
            time.sleep(steady_s)
        swaps: list[tuple[float, float]] = []
        durations: dict[str, list[float]] = {"rollout_load": [], "rollout_reuse": [], "rollback": [], "switch": []}
        failures_expected: dict[str, str | None] = {}
        with ClosedLoop(url, clients) as load:
            time.sleep(1.0)
            for i in range(rollouts):
                target = "B" if i % 2 == 0 else "A"
                begin = time.time()
                seconds, res, error = _timed(rollout, bundles[target], url, grace_s=2.0, lock_dir=workdir)
                swaps.append((begin, time.time()))
                assert error is None, error
                durations["rollout_reuse" if res.reused else "rollout_load"].append(seconds)
                durations["switch"].append(res.seconds["switch"])
                durations.setdefault("switch_ensemble_load", []).append(res.seconds["switch_load"])
                time.sleep(0.5)
            begin = time.time()
            seconds, res, error = _timed(rollback, url, lock_dir=workdir)
            swaps.append((begin, time.time()))
            assert error is None, error
            durations["rollback"].append(seconds)
            durations.setdefault("rollback_to_traffic_switched", []).append(res.seconds["to_switched"])
            for name in ("broken_onnx", "broken_py", "tampered"):
                begin = time.time()
                seconds, res, error = _timed(rollout, bundles[name], url, grace_s=2.0, lock_dir=workdir)
                swaps.append((begin, time.time()))
                failures_expected[name] = error
                durations.setdefault(f"{name}_fails_in", []).append(seconds)
            time.sleep(1.0)
        live_after = read_state(connect(url)).live

        def during(start: float) -> bool:
            return any(a <= start <= b for a, b in swaps)

        ok_lat_swap = [r.latency_ms for r in load.records if r.error is None and during(r.start)]
        ok_lat_rest = [r.latency_ms for r in load.records if r.error is None and not during(r.start)]
        result.update({
            "steady": {"requests": len(steady.records), "failed": len(steady.failures),
                       "latency_ms": summarize([r.latency_ms for r in steady.records])},
            "under_swaps": {
                "requests": len(load.records), "failed": len(load.failures), "failure_messages": load.failures[:5],
                "answers_outside_A_B": sum(v not in (ids["A"], ids["B"]) for v in load.versions),
                "answers_by_bundle": {k: load.versions.count(ids[k]) for k in "AB"},
                "answers_with_disagreeing_stages": sum("mixed bundles refused" in f for f in load.failures),
                "latency_ms_during_swaps": summarize(ok_lat_swap) if ok_lat_swap else None,
                "latency_ms_between_swaps": summarize(ok_lat_rest) if ok_lat_rest else None,
            },
            "durations_s": {k: {"n": len(v), "median": float(np.median(v)), "max": float(np.max(v))}
                            for k, v in durations.items() if v},
            "broken_bundles": {k: (v or "ACCEPTED (bug)") for k, v in failures_expected.items()},
            # the last rollout made A live when rollouts is even (B, A, B, ...); the rollback then made B live
            "live_after_broken": live_after, "live_expected": ids["B"] if rollouts % 2 == 0 else ids["A"],
        })
        result["under_swaps"]["ratio_p99_swaps_vs_steady"] = (
            result["under_swaps"]["latency_ms_during_swaps"]["p99_ms"] / result["steady"]["latency_ms"]["p99_ms"]
            if ok_lat_swap else None)

        rss = [server_rss_mb(server.pid)]
        cycle_s = []
        for i in range(cycles):
            loaded = read_state(connect(url)).bundles  # live + previous: two of A/B/C; load the third
            target = next(name for name in "ABC" if ids[name] not in loaded)
            seconds, res, error = _timed(rollout, bundles[target], url, grace_s=0.0, lock_dir=workdir)
            assert error is None, error
            cycle_s.append(seconds)
            rss.append(server_rss_mb(server.pid))
            print(f"cycle {i + 1}/{cycles}: {target} loaded={not res.reused} in {seconds:.1f} s, rss {rss[-1]:.0f} MiB", flush=True)
        result["swap_cycles"] = {
            "cycles": cycles, "each_cycle": "load one bundle (its stage models + pinned ensemble), switch, unload one",
            "rollout_s": {"median": float(np.median(cycle_s)), "max": float(np.max(cycle_s))} if cycle_s else None,
            "rss_mb": [round(x, 1) for x in rss],
            "rss_growth_mb_first_to_last": round(rss[-1] - rss[0], 1),
            "rss_growth_mb_second_half": round(rss[-1] - rss[len(rss) // 2], 1) if cycles else 0.0,
            "loaded_bundles_after": sorted(read_state(connect(url)).bundles),
        }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/bench-swap"))
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--steady-s", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/swap.json"))
    args = parser.parse_args()
    if args.clients < 1 or args.rollouts < 0 or args.cycles < 0:
        parser.error("--clients >= 1, --rollouts >= 0 and --cycles >= 0")
    run(args.workdir.resolve(), args.clients, args.rollouts, args.cycles, args.steady_s, args.out)


if __name__ == "__main__":
    main()
