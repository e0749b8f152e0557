"""Where a lone request's time goes (c=1): one table, ms per part, summing to the measured latency.

    python benchmarks/breakdown_c1.py --export build/exports/demo --data build/data/demo \
        --requests 600 --warmup 200 --tag demo

One tritonserver on the export (``--variant`` as in ab_serving.py, default ``model_repository``) and
the in-process floor (``InProcessRecommender``) in this process, same requests, interleaved blocks:

1. **Triton trace** (level TIMESTAMPS, switched on through the trace API for the traced blocks only):
   per request the gRPC front end (request read -> ensemble start, ensemble end -> response sent),
   each stage's queue / compute_input / compute_infer / compute_output, and the ensemble's hand-offs
   between stages; the client's send/receive stamps (``time.monotonic_ns``, the clock Triton's
   steady_clock reads on Linux) give the client library + loopback part. Parts are averaged over the
   requests whose end-to-end latency lies in the middle band (p40-p60) of the traced blocks, so the
   table sums to that band's mean, which is the p50 up to a few tenths of a ms.
2. **Inside each stage's compute_infer**: the stage's own code, from its ``cascade_phase_seconds``
   histograms (sum/count deltas from /metrics over untraced blocks), vs the rest (Python backend:
   request and response through shared memory, stub wake-ups, the adapter's tensor wrapping).
3. **The floor**: the same stage objects called in one process (``InProcessRecommender.recommend``),
   each stage method timed, on the same requests.

Prints the table and writes ``benchmarks/results/breakdown-<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from loadtests.sampling import RecommendRequest, RequestMix, RequestSampler, load_ids  # noqa: E402

STAGES = "candidates,ranking"  # the ensemble's steps in order (--stages)
ENSEMBLE = "recommend"
# in-process floor: the InProcessRecommender stage methods timed, in the order a request runs them
FLOOR_METHODS = (("user", "lookup_many", "feast + user_encode"), ("query", "query_many", "query_tower"),
                 ("retrieval", "retrieve_sources", "retrieval"), ("items", "gather", "item_features"),
                 ("ranking", "score_many", "ranking"), ("business", "apply", "business_logic"))
# the merged models' phases (names unique across models) that correspond to the floor's rows
PHASE_OF_FLOOR = {"feast + user_encode": ("feast", "user_encode"), "query_tower": ("query_tower",),
                  "retrieval": ("retrieval",), "item_features": ("item_features",), "ranking": ("ranking",),
                  "business_logic": ("business_logic",)}


# --- client ------------------------------------------------------------------------------------
def send_block(client: Any, block: list[RecommendRequest]) -> tuple[np.ndarray, np.ndarray, int]:
    """(send ns, receive ns) per request (monotonic clock), errors."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from loadtests.wire import MODEL_NAME, grpc_inputs

    outputs = [grpcclient.InferRequestedOutput(n) for n in ("item_ids", "scores", "degraded")]
    sent, done, errors = np.zeros(len(block), np.int64), np.zeros(len(block), np.int64), 0
    for i, req in enumerate(block):
        inputs = grpc_inputs(req)
        sent[i] = time.monotonic_ns()
        try:
            client.infer(MODEL_NAME, inputs, outputs=outputs)
        except InferenceServerException:
            errors += 1
        done[i] = time.monotonic_ns()
    return sent, done, errors


def phase_sums(metrics_url: str) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(model, phase): (sum seconds, count)}`` of cascade_phase_seconds from /metrics."""
    from cascade.experiments.readings import parse, scrape

    out: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for sample, labels, value in parse(scrape(metrics_url, timeout_s=10)):
        if sample in ("cascade_phase_seconds_sum", "cascade_phase_seconds_count"):
            out[(labels["model"], labels["phase"])][0 if sample.endswith("_sum") else 1] += value
    return {k: (v[0], v[1]) for k, v in out.items()}


# --- trace -------------------------------------------------------------------------------------
def read_trace(path: Path) -> list[dict[str, Any]]:
    """Triton's trace file -> one dict per ensemble request: its timestamps and its children's."""
    entries = json.loads(path.read_text())
    by_id: dict[int, dict[str, Any]] = {}
    for e in entries:
        row = by_id.setdefault(int(e["id"]), {"ts": {}})
        for key in ("model_name", "parent_id"):
            if key in e:
                row[key] = e[key]
        for t in e.get("timestamps", []):
            row["ts"][t["name"]] = int(t["ns"])
    requests = []
    for tid, row in by_id.items():
        if row.get("model_name") != ENSEMBLE:
            continue
        children = {c["model_name"].split("__", 1)[0]: c["ts"] for c in by_id.values()
                    if int(c.get("parent_id", 0) or 0) == tid and "model_name" in c}
        requests.append({"ts": row["ts"], "children": children})
    return sorted(requests, key=lambda r: r["ts"].get("REQUEST_START", 0))


def parts_of(trace: dict[str, Any], sent: int, done: int, stages: list[str]) -> dict[str, float] | None:
    """One request's parts in ms (None when a timestamp is missing)."""
    ts, ch = trace["ts"], trace["children"]
    try:
        p: dict[str, float] = {}
        p["client + loopback (send -> read, sent -> received)"] = (ts["GRPC_WAITREAD_END"] - sent) + (done - ts["GRPC_SEND_END"])
        p["gRPC front end in (read -> ensemble start)"] = ts["REQUEST_START"] - ts["GRPC_WAITREAD_END"]
        p[f"ensemble hand-off (ensemble start -> {stages[0]})"] = ch[stages[0]]["REQUEST_START"] - ts["REQUEST_START"]
        for k, stage in enumerate(stages):
            c = ch[stage]
            p[f"{stage}: queue (dynamic batcher)"] = c["COMPUTE_START"] - c["REQUEST_START"]
            p[f"{stage}: compute_input"] = c["COMPUTE_INPUT_END"] - c["COMPUTE_START"]
            p[f"{stage}: compute_infer"] = c["COMPUTE_OUTPUT_START"] - c["COMPUTE_INPUT_END"]
            # the response out until the next step starts (the ensemble moves on before the stage's
            # COMPUTE_END is stamped, so the rest of compute_output is off the critical path)
            if k + 1 < len(stages):
                p[f"{stage}: compute_output + hand-off to {stages[k + 1]}"] = (
                    ch[stages[k + 1]]["REQUEST_START"] - c["COMPUTE_OUTPUT_START"])
            else:
                p[f"{stage}: compute_output + ensemble response"] = ts["REQUEST_END"] - c["COMPUTE_OUTPUT_START"]
        p["gRPC front end out (ensemble end -> sent)"] = ts["GRPC_SEND_END"] - ts["REQUEST_END"]
    except KeyError:
        return None
    return {k: v / 1e6 for k, v in p.items()}


# --- floor -------------------------------------------------------------------------------------
def timed_floor(floor: Any) -> dict[str, list[float]]:
    """Wrap the floor's stage methods with timers (ms per call appended to the returned lists)."""
    times: dict[str, list[float]] = {label: [] for _, _, label in FLOOR_METHODS}

    def wrap(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                times[label].append((time.perf_counter() - t0) * 1000.0)
        return timed

    for attr, method, label in FLOOR_METHODS:
        obj = getattr(floor, attr)
        setattr(obj, method, wrap(getattr(obj, method), label))
    return times


def run_floor(floor: Any, block: list[RecommendRequest]) -> np.ndarray:
    out = np.empty(len(block))
    for i, r in enumerate(block):
        t0 = time.perf_counter()
        floor.recommend(int(r.user_id), top_k=int(r.top_k), exclude=np.asarray(r.exclude_item_ids).tolist(),
                        explore=float(r.explore or 0.0), seed=r.seed)
        out[i] = (time.perf_counter() - t0) * 1000.0
    return out


# --- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import tritonclient.grpc as grpcclient

    from benchmarks.ab_serving import make_variant, parse_variant
    from benchmarks.latency import summarize
    from benchmarks.triton_stats import breakdown, snapshot
    from cascade.online.pipeline import InProcessRecommender
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", type=Path, required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--variant", default="model_repository", help="ab_serving.py variant SOURCE[:PYTHONPATH][@OVERRIDES]")
    p.add_argument("--requests", type=int, default=600, help="per block kind (traced, untraced, floor)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="demo")
    p.add_argument("--stages", default=STAGES, help="the ensemble's steps, in order")
    p.add_argument("--reanalyse", action="store_true",
                   help="recompute the trace table of results/breakdown-<tag>.json from its saved trace")
    args = p.parse_args(argv)
    if args.reanalyse:
        return reanalyse(args.tag, args.stages.split(","))

    variant = parse_variant(f"breakdown={args.variant}")
    folder, extra = make_variant(args.export, variant, ROOT / "build" / "bench" / "variants")
    trace_file = ROOT / "build" / "bench" / f"trace-{args.tag}.json"
    trace_file.unlink(missing_ok=True)
    extra += [f"--trace-config=triton,file={trace_file}", "--trace-config=level=OFF", "--trace-config=rate=1",
              "--trace-config=count=-1", "--trace-config=triton,log-frequency=0"]
    http, grpc, metrics = free_ports(3)
    server = TritonServer(TritonServerConfig(model_repository=(folder / "model_repository").resolve(), http_port=http,
                                             grpc_port=grpc, metrics_port=metrics, extra_args=extra,
                                             log_file=ROOT / "build" / "logs" / f"breakdown-{args.tag}.log"))
    metrics_url = f"http://127.0.0.1:{metrics}/metrics"
    users = load_ids(args.data, "user")
    stream = RequestSampler(users, RequestMix(top_k=10), seed=args.seed)
    loadavg = [Path("/proc/loadavg").read_text().strip()]
    per = max(1, args.requests // args.rounds)
    traced: list[tuple[np.ndarray, np.ndarray]] = []
    untraced_ms: list[np.ndarray] = []
    floor_ms: list[np.ndarray] = []
    errors = 0
    try:
        server.start()
        floor = InProcessRecommender.load(args.export)
        server.wait_until_ready(600)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        warm = stream.take(args.warmup)
        send_block(client, warm)
        run_floor(floor, warm[: max(20, args.warmup // 4)])
        floor_times = timed_floor(floor)
        stats_before, phases_before = snapshot(client), phase_sums(metrics_url)
        for r in range(args.rounds):
            block = stream.take(per)
            for kind in (("untraced", "traced", "floor") if r % 2 == 0 else ("floor", "traced", "untraced")):
                if kind == "floor":
                    floor_ms.append(run_floor(floor, block))
                elif kind == "untraced":
                    s, d, e = send_block(client, block)
                    untraced_ms.append((d - s) / 1e6)
                    errors += e
                else:
                    client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]})
                    s, d, e = send_block(client, block)
                    client.update_trace_settings(settings={"trace_level": ["OFF"]})
                    traced.append((s, d))
                    errors += e
            loadavg.append(Path("/proc/loadavg").read_text().strip())
            print(f"round {r + 1}/{args.rounds}: untraced p50 {np.median(untraced_ms[-1]):.2f} ms, traced p50 "
                  f"{np.median((traced[-1][1] - traced[-1][0]) / 1e6):.2f}, floor p50 {np.median(floor_ms[-1]):.2f}", flush=True)
        stats_after, phases_after = snapshot(client), phase_sums(metrics_url)
        client.close()
    finally:
        server.stop()

    sent = np.concatenate([s for s, _ in traced])
    done = np.concatenate([d for _, d in traced])
    np.savez(trace_file.with_suffix(".client.npz"), sent=sent, done=done)
    table = trace_table(trace_file, sent, done, args.stages.split(","))

    # inside compute_infer: the stages' own phases (untraced + traced blocks' histograms)
    phase_ms = {}
    for key, (s1, c1) in phases_after.items():
        s0, c0 = phases_before.get(key, (0.0, 0.0))
        if c1 > c0:
            phase_ms[f"{key[0]}/{key[1]}"] = (s1 - s0) / (c1 - c0) * 1000.0
    stages = breakdown(stats_before, stats_after)
    floor_parts = {label: float(np.mean(v)) for label, v in floor_times.items() if v}
    compare = []
    for label, names in PHASE_OF_FLOOR.items():
        in_stub = sum(v for k, v in phase_ms.items() if k.split("/", 1)[1] in names)
        compare.append({"part": label, "in_stub_ms": in_stub, "floor_ms": floor_parts.get(label, float("nan"))})
    result = {
        "tag": args.tag, "export": str(args.export), "variant": args.variant, "requests_per_kind": per * args.rounds,
        "rounds": args.rounds, "loadavg": loadavg, "errors": errors, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "latency_untraced": summarize(np.concatenate(untraced_ms)),
        "latency_floor": summarize(np.concatenate(floor_ms)), **table, "phase_ms_per_execution": phase_ms,
        "stage_vs_floor": compare, "floor_parts_ms": floor_parts, "triton_stats": stages,
    }
    print_report(result)
    out = ROOT / "benchmarks" / "results" / f"breakdown-{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {out}")
    return 0


def trace_table(trace_file: Path, sent: np.ndarray, done: np.ndarray, stages: list[str]) -> dict[str, Any]:
    """The traced requests (matched to the trace by time: one sequential client) -> parts per request;
    the table = their mean over the p40-p60 band of end-to-end latency."""
    from benchmarks.latency import summarize

    rows = []
    for t in read_trace(trace_file):
        start = t["ts"].get("GRPC_WAITREAD_END", t["ts"].get("REQUEST_START", 0))
        i = int(np.searchsorted(sent, start, side="right")) - 1
        if 0 <= i < len(sent) and start <= done[i]:
            row = parts_of(t, int(sent[i]), int(done[i]), stages)
            if row is not None:
                rows.append(((done[i] - sent[i]) / 1e6, row))
    if not rows:
        raise SystemExit(f"no usable traces in {trace_file}")
    totals = np.array([t for t, _ in rows])
    lo, hi = np.percentile(totals, [40, 60])
    band = [r for t, r in rows if lo <= t <= hi]
    return {"latency_traced": summarize(totals), "traced_matched": len(rows),
            "band": {"p40_ms": float(lo), "p60_ms": float(hi), "requests": len(band),
                     "mean_ms": float(np.mean([t for t in totals if lo <= t <= hi]))},
            "parts_band_ms": {n: float(np.mean([r[n] for r in band])) for n in band[0]},
            "parts_all_mean_ms": {n: float(np.mean([r[n] for _, r in rows])) for n in band[0]}}


def reanalyse(tag: str, stages: list[str]) -> int:
    out = ROOT / "benchmarks" / "results" / f"breakdown-{tag}.json"
    trace_file = ROOT / "build" / "bench" / f"trace-{tag}.json"
    stamps = np.load(trace_file.with_suffix(".client.npz"))
    result = {**json.loads(out.read_text()), **trace_table(trace_file, stamps["sent"], stamps["done"], stages)}
    print_report(result)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {out}")
    return 0


def print_report(result: dict[str, Any]) -> None:
    lat, tr, fl = result["latency_untraced"], result["latency_traced"], result["latency_floor"]
    print(f"\nbreakdown '{result['tag']}' at c=1, loadavg {result['loadavg'][0]} -> {result['loadavg'][-1]}")
    print(f"untraced p50 {lat['p50_ms']:.2f} / p99 {lat['p99_ms']:.2f} ms; traced p50 {tr['p50_ms']:.2f}; "
          f"floor p50 {fl['p50_ms']:.2f} / p99 {fl['p99_ms']:.2f}; errors {result['errors']}")
    band = result["band"]
    print(f"\nparts, mean over the {band['requests']} traced requests in the p40-p60 band "
          f"({band['p40_ms']:.2f}-{band['p60_ms']:.2f} ms, mean {band['mean_ms']:.2f}):")
    for name, ms in result["parts_band_ms"].items():
        print(f"  {name:58s} {ms:7.3f}")
    print(f"  {'sum':58s} {sum(result['parts_band_ms'].values()):7.3f}")
    print("\nstage code in the stub (cascade_phase_seconds, ms per execution) vs the floor (same method, in process):")
    for row in result["stage_vs_floor"]:
        ratio = row["in_stub_ms"] / row["floor_ms"] if row["floor_ms"] else float("nan")
        print(f"  {row['part']:24s} stub {row['in_stub_ms']:6.3f}  floor {row['floor_ms']:6.3f}  x{ratio:.2f}")
    print("  phases: " + ", ".join(f"{k}={v:.3f}" for k, v in result["phase_ms_per_execution"].items()))
    print("\ncompute_infer (mean over all traced requests) = the stage's phases + the rest (Python backend:")
    print("request/response through shared memory, stub wake-up, the adapter's tensors):")
    for name, ms in result["parts_all_mean_ms"].items():
        if name.endswith(": compute_infer"):
            model = name.split(":", 1)[0]
            phases = sum(v for k, v in result["phase_ms_per_execution"].items() if k.startswith(model + "/"))
            print(f"  {model:16s} compute_infer {ms:6.3f}  phases {phases:6.3f}  rest {ms - phases:6.3f}")


if __name__ == "__main__":
    sys.exit(main())
