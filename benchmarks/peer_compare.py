"""Side by side, in ONE interleaved run: the FastAPI peer (benchmarks/peer_fastapi.py), the
``recommend`` ensemble over gRPC and over HTTP (KServe v2 JSON), and the in-process floor
(``InProcessRecommender`` in this process, no server), all on the same export, with the same
seeded Zipf request stream and the same client pattern (issue 17):

    python benchmarks/peer_compare.py --export build/exports/demo --data build/data/demo --tag demo

1. c=1: ``--rounds`` rounds; each round takes the next ``--block`` requests and sends them one
   after another to every target in turn (order reversed every other round), so background load
   on the shared box hits every target alike; server CPU (user+system from /proc, the server's
   whole process session: tritonserver + every stub, or the uvicorn process) is read around each
   block -> CPU ms per request.
2. ``--concurrency`` (8) clients: ``--window-rounds`` rounds of one closed-loop window per server
   (``--window-seconds``); clients are threads in 2 processes, each with its own keep-alive
   connection (HTTP: ``http.client``; gRPC: ``tritonclient.grpc``), sending the next request when
   the answer arrives. Only answers inside the measured window count.

The ensemble serves this checkout's ``model_repository/`` over the export's artifacts (a variant
folder, as ``benchmarks/ab_serving.py`` makes them; ``--repository`` overrides). Prints the table
and writes ``benchmarks/results/peer-<tag>.json``. Absolute numbers on a shared box drift between
minutes; compare the ratios inside one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.latency import summarize  # noqa: E402
from loadtests.sampling import RecommendRequest, RequestMix, RequestSampler, load_ids  # noqa: E402

TARGETS = ("peer", "ensemble_grpc", "ensemble_http", "floor")


# --- one request per kind ----------------------------------------------------------------------
def _peer_body(req: RecommendRequest) -> bytes:
    body: dict[str, Any] = {"user_id": int(req.user_id), "top_k": int(req.top_k),
                            "exclude_item_ids": [int(x) for x in req.exclude_item_ids], "explore": float(req.explore)}
    if req.seed is not None:
        body["seed"] = int(req.seed)
    return json.dumps(body).encode()


def make_sender(kind: str, address: str, floor: Any = None) -> tuple[Callable[[RecommendRequest], None], Callable[[], None]]:
    """(send(req) raising on any failure, close()) for one client of ``kind``."""
    if kind == "floor":
        return (lambda r: floor.recommend(r.user_id, top_k=r.top_k, exclude=r.exclude_item_ids,
                                          explore=r.explore, seed=r.seed)), (lambda: None)
    if kind == "ensemble_grpc":
        import tritonclient.grpc as grpcclient

        from loadtests.wire import MODEL_NAME, grpc_inputs, grpc_outputs

        client = grpcclient.InferenceServerClient(address)
        outputs = grpc_outputs()
        return (lambda r: client.infer(MODEL_NAME, grpc_inputs(r), outputs=outputs)), client.close
    import http.client

    from loadtests.wire import http_payload

    host, _, port = address.partition(":")
    conn = [http.client.HTTPConnection(host, int(port), timeout=30)]
    headers = {"Content-Type": "application/json"}
    if kind == "peer":
        path, encode = "/recommend", _peer_body
    else:
        path, encode = "/v2/models/recommend/infer", (lambda r: json.dumps(http_payload(r)).encode())

    def post(body: bytes) -> tuple[int, bytes]:
        conn[0].request("POST", path, body=body, headers=headers)
        response = conn[0].getresponse()
        return response.status, response.read()

    def send(r: RecommendRequest) -> None:
        body = encode(r)
        try:
            status, payload = post(body)
        except (http.client.RemoteDisconnected, ConnectionError):  # the server closed an idle keep-alive
            conn[0].close()
            conn[0] = http.client.HTTPConnection(host, int(port), timeout=30)
            status, payload = post(body)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
        json.loads(payload)  # the client decodes the answer, as a real one would

    return send, (lambda: conn[0].close())


# --- closed-loop windows (spawned processes x threads) -----------------------------------------
def _window_process(kind: str, address: str, n_threads: int, seed: int, users: np.ndarray, warmup_s: float,
                    duration_s: float, barrier: Any, queue: Any) -> None:
    sys.path.insert(0, str(ROOT))
    barrier.wait()
    start = time.perf_counter() + 0.2
    begin, end = start + warmup_s, start + warmup_s + duration_s
    latencies: list[list[float]] = [[] for _ in range(n_threads)]
    counts = [[0, 0] for _ in range(n_threads)]  # [answers in total, errors in the window]

    def client(t: int) -> None:
        send, close = make_sender(kind, address)
        reqs = RequestSampler(users, RequestMix(top_k=10), seed=seed * 1009 + t).take(256)
        i = 0
        time.sleep(max(0.0, start - time.perf_counter()))
        try:
            while True:
                sent = time.perf_counter()
                if sent >= end:
                    return
                try:
                    send(reqs[i % len(reqs)])
                    ok = True
                except Exception:  # noqa: BLE001 - counted
                    ok = False
                done = time.perf_counter()
                counts[t][0] += 1
                if begin <= sent and done <= end:
                    if ok:
                        latencies[t].append((done - sent) * 1000.0)
                    else:
                        counts[t][1] += 1
                i += 1
        finally:
            close()

    threads = [threading.Thread(target=client, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put({"latencies_ms": [x for lat in latencies for x in lat], "answers": sum(c[0] for c in counts),
               "errors": sum(c[1] for c in counts)})


def run_window(kind: str, address: str, concurrency: int, seed: int, users: np.ndarray, warmup_s: float,
               duration_s: float, processes: int = 2) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    shares = [s for s in shares if s]
    barrier, queue = ctx.Barrier(len(shares)), ctx.Queue()
    procs = [ctx.Process(target=_window_process, daemon=True,
                         args=(kind, address, n, seed * 31 + i, users, warmup_s, duration_s, barrier, queue))
             for i, n in enumerate(shares)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120 + warmup_s + duration_s) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    lat = np.asarray([x for r in results for x in r["latencies_ms"]], dtype=np.float64)
    return {"latencies_ms": lat, "rps": lat.size / duration_s, "answers": sum(r["answers"] for r in results),
            "errors": sum(r["errors"] for r in results)}


# --- servers -----------------------------------------------------------------------------------
def start_peer(export: Path, port: int, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "peer_fastapi.py"), "--export", str(export),
                             "--port", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own session: /proc CPU by session, stop by pid


def wait_http(port: int, path: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    import http.client

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"peer exited with {proc.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"127.0.0.1:{port}{path} not ready after {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.ab_serving import make_variant, parse_variant
    from benchmarks.proc_cpu import cpu_ms_per_request, session_cpu_seconds
    from cascade.online.pipeline import InProcessRecommender
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", type=Path, required=True)
    p.add_argument("--data", required=True, help="dataset folder (known user ids)")
    p.add_argument("--repository", default=str(ROOT / "model_repository"),
                   help="ensemble variant, as ab_serving's --variant SOURCE[:PYTHONPATH][@OVERRIDES]")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--block", type=int, default=400)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--window-rounds", type=int, default=3)
    p.add_argument("--window-seconds", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="demo")
    args = p.parse_args(argv)

    users = load_ids(args.data, "user")
    variant = parse_variant(f"peer-ensemble={args.repository}")
    folder, extra = make_variant(args.export, variant, ROOT / "build" / "bench" / "variants")
    http_port, grpc_port, metrics_port, peer_port = free_ports(4)
    server = TritonServer(TritonServerConfig(model_repository=(folder / "model_repository").resolve(), http_port=http_port,
                                             grpc_port=grpc_port, metrics_port=metrics_port, extra_args=extra,
                                             log_file=ROOT / "build" / "logs" / f"peer-{args.tag}-triton.log"))
    peer = None
    uptime = [Path("/proc/loadavg").read_text().strip()]
    try:
        server.start()
        peer = start_peer(args.export, peer_port, ROOT / "build" / "logs" / f"peer-{args.tag}-uvicorn.log")
        print(f"tritonserver pid {server.pid} (grpc {grpc_port}, http {http_port}); peer pid {peer.pid} (:{peer_port})", flush=True)
        floor = InProcessRecommender.load(args.export)
        server.wait_until_ready(600)
        wait_http(peer_port, "/health", 300, peer)
        addresses = {"peer": f"127.0.0.1:{peer_port}", "ensemble_grpc": f"127.0.0.1:{grpc_port}",
                     "ensemble_http": f"127.0.0.1:{http_port}", "floor": ""}
        pids = {"peer": peer.pid, "ensemble_grpc": server.pid, "ensemble_http": server.pid}
        senders = {k: make_sender(k, a, floor) for k, a in addresses.items()}
        stream = RequestSampler(users, RequestMix(top_k=10), seed=args.seed)
        warm = stream.take(args.warmup)
        for name, (send, _) in senders.items():
            for r in warm:
                send(r)
        # 1. c=1 blocks, interleaved
        lat: dict[str, list[np.ndarray]] = {k: [] for k in TARGETS}
        cpu1: dict[str, list[dict[str, float]]] = {k: [] for k in TARGETS if k != "floor"}
        for r in range(args.rounds):
            block = stream.take(args.block)
            order = list(TARGETS) if r % 2 == 0 else list(reversed(TARGETS))
            for name in order:
                send = senders[name][0]
                before = session_cpu_seconds(pids[name]) if name in pids else None
                values = np.empty(len(block))
                for i, req in enumerate(block):
                    t0 = time.perf_counter()
                    send(req)
                    values[i] = (time.perf_counter() - t0) * 1000.0
                if before is not None:
                    cpu1[name].append(cpu_ms_per_request(before, session_cpu_seconds(pids[name]), len(block)))
                lat[name].append(values)
            uptime.append(Path("/proc/loadavg").read_text().strip())
            print(f"round {r + 1}/{args.rounds}: " + "  ".join(
                f"{k} p50 {np.median(lat[k][-1]):.2f}" for k in TARGETS), flush=True)
        for _, close in senders.values():
            close()
        # 2. closed-loop windows, interleaved
        win: dict[str, list[dict[str, Any]]] = {k: [] for k in TARGETS if k != "floor"}
        for r in range(args.window_rounds):
            order = list(win) if r % 2 == 0 else list(reversed(list(win)))
            for name in order:
                before = session_cpu_seconds(pids[name])
                w = run_window(name, addresses[name], args.concurrency, args.seed + r, users, 1.0, args.window_seconds)
                w["cpu"] = cpu_ms_per_request(before, session_cpu_seconds(pids[name]), w["answers"])
                win[name].append(w)
                print(f"window {r + 1}/{args.window_rounds} {name}: {w['rps']:.0f} req/s, "
                      f"p99 {np.percentile(w['latencies_ms'], 99):.1f} ms, errors {w['errors']}", flush=True)
            uptime.append(Path("/proc/loadavg").read_text().strip())
    finally:
        if peer is not None and peer.poll() is None:
            peer.terminate()
            try:
                peer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                peer.kill()
        server.stop()

    result: dict[str, Any] = {
        "tag": args.tag, "export": str(args.export), "repository": args.repository, "rounds": args.rounds,
        "block": args.block, "concurrency": args.concurrency, "window_rounds": args.window_rounds,
        "window_s": args.window_seconds, "loadavg": uptime, "cpus": os.cpu_count(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "targets": {},
    }
    for name in TARGETS:
        row: dict[str, Any] = {"c1": summarize(np.concatenate(lat[name])),
                               "c1_p50_per_round_ms": [float(np.median(x)) for x in lat[name]]}
        if name in cpu1:
            row["c1_server_cpu_ms_per_request"] = float(np.median([c["total"] for c in cpu1[name]]))
            w = win[name]
            row[f"c{args.concurrency}"] = {
                "rps_per_window": [x["rps"] for x in w], "rps_median": float(np.median([x["rps"] for x in w])),
                "latency": summarize(np.concatenate([x["latencies_ms"] for x in w])),
                "errors": sum(x["errors"] for x in w),
                "server_cpu_ms_per_request": float(np.median([x["cpu"]["total"] for x in w])),
            }
        result["targets"][name] = row
    print_table(result)
    out = ROOT / "benchmarks" / "results" / f"peer-{args.tag}.json"
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {out}")
    return 0


def print_table(result: dict[str, Any]) -> None:
    c = result["concurrency"]
    floor = result["targets"]["floor"]["c1"]["p50_ms"]
    peer = result["targets"]["peer"]
    print(f"\npeer comparison '{result['tag']}': {result['rounds']} x {result['block']} requests at c=1, "
          f"{result['window_rounds']} x {result['window_s']:.0f} s windows at c={c}; loadavg {result['loadavg'][0]} -> {result['loadavg'][-1]}")
    print(f"{'target':14s} {'c1 p50':>7s} {'p99':>7s} {'/floor':>6s} {'/peer':>6s} {'cpu ms':>7s} | "
          f"{'c' + str(c) + ' req/s':>9s} {'/peer':>6s} {'p99':>7s} {'cpu ms':>7s}")
    for name, row in result["targets"].items():
        c1 = row["c1"]
        line = (f"{name:14s} {c1['p50_ms']:7.2f} {c1['p99_ms']:7.2f} {c1['p50_ms'] / floor:6.2f} "
                f"{c1['p50_ms'] / peer['c1']['p50_ms']:6.2f} {row.get('c1_server_cpu_ms_per_request', float('nan')):7.2f} | ")
        load = row.get(f"c{c}")
        if load:
            line += (f"{load['rps_median']:9.0f} {load['rps_median'] / peer[f'c{c}']['rps_median']:6.2f} "
                     f"{load['latency']['p99_ms']:7.1f} {load['server_cpu_ms_per_request']:7.2f}")
        print(line)


if __name__ == "__main__":
    sys.exit(main())
