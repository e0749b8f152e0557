"""The GPU path, measured on one machine in one run (issue 13's device check).

    python3 benchmarks/gpu_check.py --device cuda            # on the lent GPU machine (<= 8 min)
    python3 benchmarks/gpu_check.py --device cpu --quick     # here: the same code on reduced sizes

Needs only python3 with numpy and torch (onnxruntime and cupy are used when present): no Feast,
FAISS or installed cascade. The repository root is put on ``sys.path`` and only torch-only modules
are imported from it: ``cascade.models`` (the DLRM and two-tower definitions training uses),
``cascade.online.torch_ranking`` (the ranking stage's GPU backend) and
``cascade.online.exact_retrieval`` (the retrieval stage's GPU searcher).

Measures, on synthetic data of the production shapes (seeded):
- ranking: the DLRM on 1,000 candidates per request, batches of 1, 8 and 32 requests in one call
  (the batching stage's ``user_row`` convention), p50/p99 ms per call, per option
  (float32/float16/bfloat16, CUDA graphs, torch.compile), parity against the float32 CPU model
  (max |diff| of the logits, same top-10 per request except exact ties);
- retrieval: exact top-300 over 1M and 10M 64-d items (float16 resident), query batches of 1 and
  32 with 50 excluded rows per query, p50/p99 ms, the bytes streamed per batch over the p50 as a
  share of the device's peak and of its measured copy bandwidth; parity (recall of the float32
  exact top-300) on a sample;
- training: examples/s of a two-tower step (in-batch softmax) and a DLRM step (BCE), on the
  device and on the CPU, and the same seeded steps on both devices compared;
- the device name, driver, CUDA and torch versions.
Writes ``benchmarks/results/gpu_check_<device>.json`` (``--out`` to choose) and prints it.
Timings on a shared machine are noisy: compare variants of one run (ratios), not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Peak memory bandwidth (bytes/s) by device name, when the driver cannot be asked.
KNOWN_PEAK_BW = {"H200": 4.8e12, "H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H100": 3.35e12, "A100-SXM4-80GB": 2.039e12,
                 "A100": 1.555e12, "L40S": 0.864e12, "L4": 0.3e12, "A10G": 0.6e12}


# ---------------------------------------------------------------------------------------- sizes
class Sizes:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.candidates = 50 if quick else 1000
        self.batches = (1, 4) if quick else (1, 8, 32)
        self.repeats = 3 if quick else 200
        self.rank_items = 2_000 if quick else 1_000_000  # item-id vocabulary of the synthetic DLRM
        self.rank_users = 2_000 if quick else 1_000_000
        self.catalogs = (5_000,) if quick else (1_000_000, 10_000_000)
        self.dim = 64
        self.top_k = 50 if quick else 300
        self.excluded = 50
        self.retrieval_batches = (1, 4) if quick else (1, 32)
        self.train_steps = 2 if quick else 30
        self.cpu_train_steps = 2 if quick else 5
        self.two_tower_batch = 64 if quick else 1024
        self.dlrm_batch = 128 if quick else 4096


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def timed(fn: Callable[[], Any], repeats: int, sync: Callable[[], None], warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99), "mean_ms": statistics.fmean(samples),
            "n": len(samples)}


# ----------------------------------------------------------------------------------- environment
def environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cpu_count": os.cpu_count(), "platform": platform.platform(),
    }
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        env["onnxruntime"] = None
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        env.update({"device_name": props.name, "device_memory_gib": round(props.total_memory / 2**30, 1),
                    "compute_capability": f"{props.major}.{props.minor}", "sm_count": props.multi_processor_count})
        env["driver"] = _nvidia_smi("driver_version")
        env["peak_bandwidth_bytes_s"], env["peak_bandwidth_source"] = peak_bandwidth(props.name)
    else:
        env["device_name"] = platform.processor() or "cpu"
    return env


def _nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def peak_bandwidth(name: str) -> tuple[float | None, str]:
    """Theoretical peak memory bandwidth: from the driver (cupy: memory clock x bus width x 2),
    else nvidia-smi's max memory clock, else a table by name."""
    try:
        import cupy

        clock_khz = cupy.cuda.runtime.deviceGetAttribute(36, 0)  # cudaDevAttrMemoryClockRate
        bus_bits = cupy.cuda.runtime.deviceGetAttribute(37, 0)  # cudaDevAttrGlobalMemoryBusWidth
        if clock_khz and bus_bits:
            return 2.0 * clock_khz * 1e3 * bus_bits / 8, "cupy: 2 x memory clock x bus width"
    except Exception:  # noqa: BLE001 - cupy absent or the attribute unsupported: next source
        pass
    for key, value in KNOWN_PEAK_BW.items():
        if key in name:
            return value, f"datasheet value for {key}"
    return None, "unknown"


def copy_bandwidth(device: str) -> float:
    """Measured device-to-device copy bandwidth (read + write bytes / s) of a 1 GiB buffer."""
    import torch

    n = (1 << 30) // 4
    src = torch.empty(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src), 10, torch.cuda.synchronize)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n * 4 / (t["p50_ms"] / 1e3)


def sync_for(device: str) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


# --------------------------------------------------------------------------------------- models
def synthetic_specs(n_users: int, n_items: int) -> list[Any]:
    """The feature shapes of the demo workflow (cascade.preprocessing.default_workflow)."""
    from cascade.models.features import FeatureSpec

    items = n_items + 11  # + null and OOV buckets
    return [
        FeatureSpec("user_id", "user", "categorical", "int64", n_users + 11),
        FeatureSpec("age_bucket", "user", "categorical", "int64", 10),
        FeatureSpec("country", "user", "categorical", "int64", 40),
        FeatureSpec("activity", "user", "continuous", "float32"),
        FeatureSpec("n_interactions", "user", "continuous", "float32"),
        FeatureSpec("recent_items", "user", "categorical", "int64", items, 50),
        FeatureSpec("seen_items", "user", "categorical", "int64", items, 50),
        FeatureSpec("item_id", "item", "categorical", "int64", items),
        FeatureSpec("category", "item", "categorical", "int64", 60),
        FeatureSpec("brand", "item", "categorical", "int64", 600),
        FeatureSpec("price", "item", "continuous", "float32"),
        FeatureSpec("first_seen", "item", "continuous", "float32"),
    ]


def random_features(specs: list[Any], entity: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for s in specs:
        if s.entity != entity:
            continue
        if s.kind == "continuous":
            out[s.name] = rng.normal(size=n).astype(np.float32)
        elif s.list_length:
            values = rng.integers(1, s.cardinality, size=(n, s.list_length))
            lengths = rng.integers(0, s.list_length + 1, size=n)
            values[np.arange(s.list_length)[None, :] >= lengths[:, None]] = 0
            out[s.name] = values.astype(np.int64)
        else:
            out[s.name] = rng.integers(0, s.cardinality, size=n).astype(np.int64)
    return out


def build_models(sizes: Sizes, seed: int = 0) -> tuple[Any, Any, list[Any]]:
    import torch

    from cascade.models.dlrm import DLRM
    from cascade.models.two_tower import TwoTower

    torch.manual_seed(seed)
    specs = synthetic_specs(sizes.rank_users, sizes.rank_items)
    two_tower = TwoTower(specs).eval()
    dlrm = DLRM(specs, two_tower=two_tower).eval()
    with torch.no_grad():  # a trained model's last layer is not zero: make the top MLP count
        for p in dlrm.top.parameters():
            p.add_(0.05 * torch.randn_like(p))
        dlrm.set_item_stats(torch.randn(dlrm.item_stats.shape))
    return two_tower, dlrm, specs


def ranking_feeds(specs: list[Any], users: int, candidates: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {**random_features(specs, "user", users, rng), **random_features(specs, "item", users * candidates, rng)}
    feeds["user_row"] = np.repeat(np.arange(users, dtype=np.int64), candidates)
    return feeds


# -------------------------------------------------------------------------------------- ranking
RANKING_VARIANTS = {
    "float32": dict(dtype="float32"),
    "float16": dict(dtype="float16"),
    "bfloat16": dict(dtype="bfloat16"),
    "float32_static_shapes": dict(dtype="float32", static_shapes=True),
    "float32_cuda_graphs": dict(dtype="float32", cuda_graphs=True),
    "float16_cuda_graphs": dict(dtype="float16", cuda_graphs=True),
    "float16_compile": dict(dtype="float16", compile=True),
    "float32_no_pinned": dict(dtype="float32", pinned=False),
}


def top_k_agreement(reference: np.ndarray, scores: np.ndarray, users: int, k: int = 10) -> dict[str, float]:
    """Share of requests whose top-k (by score) is the reference's, ties in the reference allowed:
    a request agrees when every returned item scores >= the reference's k-th best."""
    ref, got = reference.reshape(users, -1), scores.reshape(users, -1)
    agree = 0
    for r, g in zip(ref, got):
        top = np.argsort(-g, kind="stable")[:k]
        kth = np.sort(r)[::-1][k - 1]
        agree += bool(np.all(r[top] >= kth - 1e-6))
    return {f"same_top{k}_share": agree / users}


def ranking_check(device: str, sizes: Sizes, variants: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from cascade.online.torch_ranking import TorchRanker, TorchRankingOptions

    _, dlrm, specs = build_models(sizes)
    reference = TorchRanker(dlrm, "cpu", TorchRankingOptions(dtype="float32"))
    out: dict[str, Any] = {"candidates_per_request": sizes.candidates, "variants": {}}
    feeds = {b: ranking_feeds(specs, b, sizes.candidates, seed=b) for b in sizes.batches}
    ref_scores = {b: reference.run(feeds[b])[0] for b in sizes.batches}
    for name in variants:
        options = RANKING_VARIANTS[name]
        entry: dict[str, Any] = {"options": options}
        try:
            started = time.perf_counter()
            ranker = TorchRanker(dlrm, device, TorchRankingOptions(**options))
            for b in sizes.batches:
                scores = ranker.run(feeds[b])[0]  # first call: capture / compile
                diff = float(np.max(np.abs(scores - ref_scores[b])))
                t = timed(lambda b=b: ranker.run(feeds[b]), sizes.repeats, sync_for(device))
                entry[f"batch{b}"] = {**t, "per_request_p99_ms": t["p99_ms"] / b, "max_abs_diff_vs_cpu_fp32": diff,
                                      **top_k_agreement(ref_scores[b], scores, b)}
            entry["seconds"] = round(time.perf_counter() - started, 1)
            log(f"ranking {name}: " + ", ".join(f"b{b} p50 {entry[f'batch{b}']['p50_ms']:.3f} ms" for b in sizes.batches))
        except Exception as exc:  # noqa: BLE001 - one variant failing must not lose the others
            entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
            log(f"ranking {name}: {entry['error']}")
        out["variants"][name] = entry
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


# ------------------------------------------------------------------------------------ retrieval
def retrieval_check(device: str, sizes: Sizes, peak: float | None, copy_bw: float | None,
                    log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from cascade.online.exact_retrieval import ExactSearcher, ExactSearchOptions

    out: dict[str, Any] = {"dim": sizes.dim, "top_k": sizes.top_k, "excluded_per_query": sizes.excluded, "catalogs": {}}
    gen = torch.Generator(device=device).manual_seed(0)
    rng = np.random.default_rng(0)
    for n in sizes.catalogs:
        entry: dict[str, Any] = {}
        items = torch.randn(n, sizes.dim, generator=gen, device=device)
        items = torch.nn.functional.normalize(items, dim=1)
        for label, options in (("float16", ExactSearchOptions(dtype="float16")),
                               ("float16_blocks64", ExactSearchOptions(dtype="float16", blocks=64)),
                               ("float32", ExactSearchOptions(dtype="float32", rescore=False))):
            try:
                searcher = ExactSearcher(items, device, options)
                variant: dict[str, Any] = {"resident_bytes": searcher.nbytes}
                for b in sizes.retrieval_batches:
                    queries = rng.normal(size=(b, sizes.dim)).astype(np.float32)
                    exclude = [rng.integers(0, n, size=sizes.excluded) for _ in range(b)]
                    t = timed(lambda: searcher.search(queries, sizes.top_k, exclude), sizes.repeats, sync_for(device))
                    achieved = searcher.nbytes / (t["p50_ms"] / 1e3)
                    variant[f"batch{b}"] = {**t, "achieved_bytes_s": achieved,
                                            "share_of_peak": achieved / peak if peak else None,
                                            "share_of_copy_bandwidth": achieved / copy_bw if copy_bw else None}
                variant["recall_vs_float32_exact"] = _retrieval_parity(searcher, items, sizes, rng)
                entry[label] = variant
                log(f"retrieval {n:,} {label}: " + ", ".join(
                    f"b{b} p50 {variant[f'batch{b}']['p50_ms']:.3f} p99 {variant[f'batch{b}']['p99_ms']:.3f} ms"
                    for b in sizes.retrieval_batches) + f", recall {variant['recall_vs_float32_exact']:.4f}")
                del searcher
            except Exception as exc:  # noqa: BLE001
                entry[label] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                log(f"retrieval {n:,} {label}: {entry[label]['error']}")
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        out["catalogs"][str(n)] = entry
        del items
    return out


def _retrieval_parity(searcher: Any, items: Any, sizes: Sizes, rng: np.random.Generator) -> float:
    """Recall of the float32 exact top-k (query x item in float32 on the same device), 8 queries,
    with exclusions; 1.0 = identical sets (exact ties aside)."""
    import torch

    queries = rng.normal(size=(8, sizes.dim)).astype(np.float32)
    exclude = [rng.integers(0, items.shape[0], size=sizes.excluded) for _ in range(8)]
    _, rows = searcher.search(queries, sizes.top_k, exclude)
    with torch.inference_mode():
        scores = torch.from_numpy(queries).to(items.device) @ items.float().T
        for i, e in enumerate(exclude):
            scores[i, torch.from_numpy(e).to(items.device)] = float("-inf")
        ref = torch.topk(scores, sizes.top_k, dim=1).indices.cpu().numpy()
    return float(np.mean([len(set(a) & set(b)) / sizes.top_k for a, b in zip(rows, ref)]))


# ------------------------------------------------------------------------------------- training
def _two_tower_step(model: Any, optimizer: Any, feats: dict[str, Any], rows: Any, log_q: Any) -> float:
    from cascade.models.two_tower import in_batch_softmax_loss

    loss = in_batch_softmax_loss(model.query(feats), model.item(feats), rows, log_q, model.config.temperature)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _dlrm_step(model: Any, optimizer: Any, feats: dict[str, Any], labels: Any) -> float:
    import torch

    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(feats), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _train(kind: str, device: str, sizes: Sizes, steps: int, seed: int = 0) -> dict[str, Any]:
    """``steps`` seeded optimizer steps of ``kind`` on ``device``: examples/s and the losses."""
    import torch

    from cascade.models.dlrm import DLRM
    from cascade.models.two_tower import TwoTower

    torch.manual_seed(seed)
    specs = synthetic_specs(sizes.rank_users, sizes.rank_items)
    two_tower = TwoTower(specs)
    two_tower.config.dropout = 0.0
    model = two_tower if kind == "two_tower" else DLRM(specs, two_tower=two_tower.eval())
    for m in model.modules():  # deterministic steps on both devices
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = sizes.two_tower_batch if kind == "two_tower" else sizes.dlrm_batch
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(steps + 2):
        f = {**random_features(specs, "user", batch, rng), **random_features(specs, "item", batch, rng)}
        feats = {k: torch.from_numpy(v).to(device) for k, v in f.items()}
        if kind == "two_tower":
            extra = (feats["item_id"], torch.zeros(batch, device=device))
        else:
            extra = (torch.from_numpy((rng.random(batch) < 0.2).astype(np.float32)).to(device),)
        batches.append((feats, extra))
    step = (lambda f, e: _two_tower_step(model, optimizer, f, *e)) if kind == "two_tower" else (
        lambda f, e: _dlrm_step(model, optimizer, f, *e))
    losses = [step(*batches[0]), step(*batches[1])]  # warm-up steps (allocations, kernels)
    sync_for(device)()
    start = time.perf_counter()
    for f, e in batches[2:]:
        losses.append(step(f, e))
    sync_for(device)()
    seconds = time.perf_counter() - start
    return {"batch": batch, "steps": steps, "examples_per_s": batch * steps / seconds, "losses": losses}


def training_check(device: str, sizes: Sizes, log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("two_tower", "dlrm"):
        entry: dict[str, Any] = {}
        try:
            cpu = _train(kind, "cpu", sizes, sizes.cpu_train_steps)
            entry["cpu"] = {k: v for k, v in cpu.items() if k != "losses"}
            if device != "cpu":
                dev = _train(kind, device, sizes, sizes.train_steps)
                entry[device] = {k: v for k, v in dev.items() if k != "losses"}
                entry["speedup_vs_cpu"] = dev["examples_per_s"] / cpu["examples_per_s"]
                n = len(cpu["losses"])  # the same seeded steps on both devices
                entry["loss_max_abs_diff_vs_cpu"] = float(np.max(np.abs(np.subtract(cpu["losses"], dev["losses"][:n]))))
            log(f"training {kind}: " + ", ".join(f"{d} {entry[d]['examples_per_s']:,.0f} ex/s" for d in entry
                                                   if isinstance(entry[d], dict)))
        except Exception as exc:  # noqa: BLE001
            entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
            log(f"training {kind}: {entry['error']}")
        out[kind] = entry
    return out


# ------------------------------------------------------------------------------------------ main
def device_tag(env: dict[str, Any], device: str) -> str:
    if device == "cpu":
        return "cpu"
    name = str(env.get("device_name", "gpu")).lower().replace("nvidia", "").strip()
    return (name.split()[0] if name else "gpu").replace("/", "_")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="reduced sizes (the unit test; a first look)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/gpu_check_<device>.json)")
    parser.add_argument("--skip", default="", help="comma list of sections to skip: ranking,retrieval,training")
    parser.add_argument("--ranking-variants", default="", help="comma list (default: all that apply to the device)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="stop starting new ranking variants after this many seconds (torch.compile runs last)")
    args = parser.parse_args(argv)

    import torch

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: torch {torch.__version__} sees no CUDA device")
    sizes = Sizes(args.quick)
    skip = {s for s in args.skip.split(",") if s}
    started = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - started:6.1f}s] {msg}", flush=True)  # noqa: E731
    env = environment(device)
    log(f"device {env.get('device_name')} driver {env.get('driver')} torch {env['torch']} (cuda {env['torch_cuda']})")
    result: dict[str, Any] = {"device": device, "quick": args.quick, "environment": env,
                              "note": "timings of one run on one machine: compare variants (ratios), not runs"}
    copy_bw = None
    if device.startswith("cuda"):
        copy_bw = copy_bandwidth(device)
        env["copy_bandwidth_bytes_s"] = copy_bw
        log(f"copy bandwidth {copy_bw / 1e12:.2f} TB/s, peak {env.get('peak_bandwidth_bytes_s')}")
    default = list(RANKING_VARIANTS) if device.startswith("cuda") else ["float32", "float16", "float32_static_shapes"]
    variants = [v for v in args.ranking_variants.split(",") if v] or default
    slow = [v for v in variants if "compile" in v]  # compilation can take minutes: after everything else
    if "ranking" not in skip:
        result["ranking"] = ranking_check(device, sizes, [v for v in variants if v not in slow], log)
    if "retrieval" not in skip:
        result["retrieval"] = retrieval_check(device, sizes, env.get("peak_bandwidth_bytes_s"), copy_bw, log)
    if "training" not in skip:
        result["training"] = training_check(device, sizes, log)
    if "ranking" not in skip and slow:
        if time.perf_counter() - started < args.budget_s:
            result["ranking"]["variants"].update(ranking_check(device, sizes, slow, log)["variants"])
        else:
            result["ranking"]["variants"].update({v: {"skipped": f"over --budget-s {args.budget_s}"} for v in slow})
    result["seconds"] = round(time.perf_counter() - started, 1)
    out = args.out or ROOT / "benchmarks" / "results" / f"gpu_check_{device_tag(env, device)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps(result, indent=2, default=float))
    log(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
