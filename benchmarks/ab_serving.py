"""A/B latency of several serving variants of ONE export, interleaved so that background load
(2 shared cores) hits every variant alike:

    python benchmarks/ab_serving.py --export build/exports/demo --data build/data/demo \
        --variant base=/tmp/orig/model_repository:/tmp/orig \
        --variant new=model_repository \
        --variant new-r2=model_repository@ranking.count=2 ... --rounds 6 --block 300

A variant is ``NAME=SOURCE[+OVERLAY][:PYTHONPATH][@OVERRIDE,...]``: SOURCE is a model-repository source folder
(``model_repository/`` of a checkout); OVERLAY (optional) a folder whose model folders replace
SOURCE's (a model folder holding a file ``REMOVED`` removes that model; benchmarks/variants/), PYTHONPATH (optional) puts another checkout's ``cascade`` in
front for that server: a folder whose ``sitecustomize.py`` is run at the top of every model.py (the
stub ignores PYTHONPATH; e.g. one that imports the committed ``cascade`` extracted with ``git
archive``), OVERRIDES edit the
copied configs: ``<model>.count=N`` (instance count), ``<model>.param.<key>=V`` (a ``parameters``
entry), ``<model>.delay=US`` (the dynamic batcher's max_queue_delay_microseconds), ``server=ARG`` (an extra
tritonserver argument, ``;`` for several; last, it may hold commas). Each variant gets a repository under
``build/bench/variants/<name>`` that links the export's artifacts and feature repo.

All servers run at once (idle stubs cost no CPU); requests go in blocks of ``--block`` to each
variant in turn for ``--rounds`` rounds (same requests for every variant). Prints p50/p99 and the
per-stage breakdown (Triton statistics) per variant and writes ``benchmarks/results/ab-<tag>.json``.

``--concurrency N`` compares under load instead: each round gives every variant in turn a closed-loop
window of N clients for ``--window-seconds`` (benchmarks/closed_loop.py) and reads the server's CPU
(tritonserver + stubs, from /proc) around it; prints req/s, p50/p99 and CPU ms per request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.bench_serving import sequential_grpc  # noqa: E402
from benchmarks.latency import summarize  # noqa: E402
from benchmarks.triton_stats import breakdown, snapshot  # noqa: E402
from loadtests.sampling import RequestMix, RequestSampler, load_ids  # noqa: E402


def parse_variant(text: str) -> dict[str, Any]:
    name, _, rest = text.partition("=")
    rest, _, overrides = rest.partition("@")
    source, _, pythonpath = rest.partition(":")
    source, _, overlay = source.partition("+")
    return {"name": name, "source": Path(source), "overlay": Path(overlay) if overlay else None,
            "pythonpath": pythonpath or None,
            "overrides": _split_overrides(overrides)}


def _split_overrides(text: str) -> list[str]:
    """Comma-separated overrides; ``server=...`` takes the rest of the text (its value may hold commas)."""
    head, sep, server = text.partition("server=")
    return [o for o in head.split(",") if o] + ([f"server={server}"] if sep else [])


def _set_count(text: str, count: int) -> str:
    return re.sub(r"instance_group \[ \{ kind: KIND_CPU count: \d+ \} \]",
                  f"instance_group [ {{ kind: KIND_CPU count: {count} }} ]", text)


def _set_param(text: str, key: str, value: str) -> str:
    line = f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}'
    pattern = re.compile(r'parameters \{ key: "' + re.escape(key) + r'" value: \{ string_value: "[^"]*" \} \}')
    return pattern.sub(line, text) if pattern.search(text) else text.rstrip() + "\n" + line + "\n"


def make_variant(export: Path, variant: dict[str, Any], out_root: Path) -> tuple[Path, list[str]]:
    """Variant export folder (links to the export's artifacts/feature repo) + extra server args."""
    target = out_root / variant["name"]
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for part in ("artifacts", "feature_repo", "export.json"):
        (target / part).symlink_to((export / part).resolve())
    repo = target / "model_repository"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".gitkeep")
    shutil.copytree(variant["source"], repo, ignore=ignore)
    for model in sorted(variant["overlay"].iterdir()) if variant.get("overlay") else []:
        if model.is_dir():
            shutil.rmtree(repo / model.name, ignore_errors=True)
            if not (model / "REMOVED").exists():
                shutil.copytree(model, repo / model.name, ignore=ignore)
    if variant["pythonpath"]:  # the stub's embedded interpreter ignores PYTHONPATH: boot in model.py
        boot = Path(variant["pythonpath"]) / "sitecustomize.py"
        for model_py in repo.glob("*/1/model.py"):
            model_py.write_text(f"import runpy as _r; _r.run_path({str(boot)!r})\n" + model_py.read_text())
    from cascade.online.export_layout import ExportLayout

    rules = ExportLayout(export).business_rules
    for config in repo.glob("*/config.pbtxt"):  # every model that reads the rules beside its model.py
        if 'key: "rules"' in config.read_text():
            shutil.copy2(rules, config.parent / "1" / "business_rules.yaml")
    server_args: list[str] = []
    for override in variant["overrides"]:
        key, _, value = override.partition("=")
        if key == "server":
            server_args += value.split(";")
            continue
        model, _, what = key.partition(".")
        config = repo / model / "config.pbtxt"
        text = config.read_text()
        if what == "count":
            text = _set_count(text, int(value))
        elif what.startswith("param."):
            text = _set_param(text, what[len("param."):], value)
        elif what == "delay":
            text, n = re.subn(r"max_queue_delay_microseconds: \d+", f"max_queue_delay_microseconds: {int(value)}", text)
            if not n:
                raise SystemExit(f"{model}: no dynamic_batching block to set a delay in")
        else:
            raise SystemExit(f"unknown override {override!r}")
        config.write_text(text)
    if not variant["pythonpath"]:  # this checkout's code: the load-time warm-up a fresh export writes
        from cascade.online.warmup import WARMUP_MODELS, write_warmups

        if all((repo / m).is_dir() for m in WARMUP_MODELS):  # an A/B-only structure has other models
            write_warmups(ExportLayout(target))
    return target, server_args


def main(argv: list[str] | None = None) -> int:
    import tritonclient.grpc as grpcclient

    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", type=Path, required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--variant", action="append", required=True)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--block", type=int, default=300)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--tag", default="ab")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=0, help="closed-loop clients per window (0 = sequential blocks)")
    p.add_argument("--window-seconds", type=float, default=6.0)
    args = p.parse_args(argv)

    variants = [parse_variant(v) for v in args.variant]
    out_root = ROOT / "build" / "bench" / "variants"
    servers: dict[str, TritonServer] = {}
    clients: dict[str, Any] = {}
    try:
        for v in variants:
            folder, extra = make_variant(args.export, v, out_root)
            http, grpc, metrics = free_ports(3)
            old = os.environ.get("PYTHONPATH")
            if v["pythonpath"]:
                os.environ["PYTHONPATH"] = v["pythonpath"]
            try:
                server = TritonServer(TritonServerConfig(
                    model_repository=(folder / "model_repository").resolve(), http_port=http, grpc_port=grpc,
                    metrics_port=metrics, extra_args=extra,
                    log_file=ROOT / "build" / "logs" / f"ab-{args.tag}-{v['name']}.log"))
                server.start()
            finally:
                if old is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = old
            servers[v["name"]] = server
            print(f"{v['name']}: pid {server.pid} grpc {grpc} {extra}", flush=True)
        for name, server in servers.items():
            server.wait_until_ready(600)
            clients[name] = grpcclient.InferenceServerClient(server.grpc_url)

        users = load_ids(args.data, "user")
        stream = RequestSampler(users, RequestMix(top_k=10), seed=args.seed)
        warm = stream.take(args.warmup)
        for name, client in clients.items():
            _, n_err, samples = sequential_grpc(client, warm)
            if n_err:
                print(f"{name}: {n_err} errors in warm-up, e.g. {samples[:1]}", flush=True)
        if args.concurrency > 0:
            result = compare_under_load(args, variants, servers, clients, users)
            return report_under_load(args, result)
        from benchmarks.proc_cpu import cpu_ms_per_request, session_cpu_seconds

        lat: dict[str, list[np.ndarray]] = {n: [] for n in clients}
        cpu: dict[str, list[float]] = {n: [] for n in clients}  # server CPU ms/request per block
        before = {n: snapshot(c) for n, c in clients.items()}
        errors = {n: 0 for n in clients}
        load = []
        for r in range(args.rounds):
            block = stream.take(args.block)
            order = list(clients) if r % 2 == 0 else list(reversed(list(clients)))
            for name in order:
                cpu_before = session_cpu_seconds(servers[name].pid)
                values, n_err, _ = sequential_grpc(clients[name], block)
                cpu[name].append(cpu_ms_per_request(cpu_before, session_cpu_seconds(servers[name].pid), len(block))["total"])
                lat[name].append(values)
                errors[name] += n_err
            load.append(os.getloadavg()[0])
        after = {n: snapshot(c) for n, c in clients.items()}
        result: dict[str, Any] = {"tag": args.tag, "export": str(args.export), "rounds": args.rounds,
                                  "block": args.block, "loadavg_1m": load,
                                  "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "variants": {}}
        for v in variants:
            name = v["name"]
            all_lat = np.concatenate(lat[name])
            per_round = [float(np.median(x)) for x in lat[name]]
            result["variants"][name] = {
                "spec": {**v, "source": str(v["source"]), "overlay": str(v["overlay"] or "")}, "latency": summarize(all_lat),
                "p50_per_round_ms": per_round, "errors": errors[name],
                "cpu_ms_per_request_median": float(np.median(cpu[name])), "cpu_ms_per_request_per_round": cpu[name],
                "stages": breakdown(before[name], after[name]),
            }
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()

    base = variants[0]["name"]
    print(f"\nA/B '{args.tag}', {args.rounds} rounds x {args.block} requests, load avg "
          f"{np.mean(result['loadavg_1m']):.2f}")
    print(f"{'variant':14s} {'p50':>7s} {'p99':>7s} {'mean':>7s} {'p50/base':>8s} {'CPU ms/req':>10s}  per-stage total ms (queue+in+infer+out)")
    for name, row in result["variants"].items():
        lat_row = row["latency"]
        ratio = lat_row["p50_ms"] / result["variants"][base]["latency"]["p50_ms"]
        stages = " ".join(f"{s['model'][:6]}={s['success_ms']:.2f}" for s in row["stages"])
        print(f"{name:14s} {lat_row['p50_ms']:7.2f} {lat_row['p99_ms']:7.2f} {lat_row['mean_ms']:7.2f} "
              f"{ratio:8.2f} {row['cpu_ms_per_request_median']:10.2f}  {stages}  err={row['errors']}")
    return write_result(args.tag, result)


def write_result(tag: str, result: dict[str, Any]) -> int:
    out = ROOT / "benchmarks" / "results" / f"ab-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {out}")
    return 0


def compare_under_load(args: argparse.Namespace, variants: list[dict[str, Any]], servers: dict[str, Any],
                       clients: dict[str, Any], users: np.ndarray) -> dict[str, Any]:
    """Interleaved closed-loop windows; per variant: rps per window, latencies, CPU ms/request."""
    from benchmarks.closed_loop import LevelSpec, run_level
    from benchmarks.proc_cpu import cpu_ms_per_request, session_cpu_seconds
    from loadtests.sampling import RequestMix

    rows: dict[str, dict[str, Any]] = {v["name"]: {"rps": [], "lat": [], "cpu": [], "errors": 0} for v in variants}
    load = []
    for r in range(args.rounds):
        order = list(servers) if r % 2 == 0 else list(reversed(list(servers)))
        for name in order:
            spec = LevelSpec(url=f"{servers[name].client_host}:{servers[name].config.grpc_port}",
                             concurrency=args.concurrency, warmup_s=1.0, duration_s=args.window_seconds,
                             user_ids=users, mix=asdict(RequestMix(top_k=10)), seed=args.seed + r)
            before, served_before = session_cpu_seconds(servers[name].pid), snapshot(clients[name])
            level = run_level(spec, processes=2)
            after, served_after = session_cpu_seconds(servers[name].pid), snapshot(clients[name])
            # CPU and requests both over the whole window incl. warm-up and drain (Triton's own count)
            served = served_after["recommend"]["inference_count"] - served_before["recommend"]["inference_count"]
            rows[name]["rps"].append(level["rps"])
            rows[name]["lat"].append(level["latencies_ms"])
            rows[name]["cpu"].append(cpu_ms_per_request(before, after, served))
            rows[name]["errors"] += level["errors"]
        load.append(os.getloadavg()[0])
    result: dict[str, Any] = {"tag": args.tag, "export": str(args.export), "mode": "closed-loop",
                              "concurrency": args.concurrency, "window_s": args.window_seconds,
                              "rounds": args.rounds, "loadavg_1m": load,
                              "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "variants": {}}
    for v in variants:
        row = rows[v["name"]]
        cpu = {k: float(np.median([c.get(k, 0.0) for c in row["cpu"]])) for k in row["cpu"][0]}
        result["variants"][v["name"]] = {
            "spec": {**v, "source": str(v["source"]), "overlay": str(v["overlay"] or "")}, "rps_per_window": row["rps"],
            "rps_median": float(np.median(row["rps"])), "latency": summarize(np.concatenate(row["lat"])),
            "cpu_ms_per_request_median": cpu, "errors": row["errors"],
        }
    return result


def report_under_load(args: argparse.Namespace, result: dict[str, Any]) -> int:
    base = next(iter(result["variants"]))
    print(f"\nA/B '{args.tag}' under load: {args.rounds} rounds x {args.window_seconds:.0f} s at concurrency "
          f"{args.concurrency}, load avg {np.mean(result['loadavg_1m']):.2f}")
    print(f"{'variant':14s} {'req/s':>7s} {'/base':>6s} {'p50':>7s} {'p99':>7s} {'CPU ms/req':>10s}  per process")
    for name, row in result["variants"].items():
        ratio = row["rps_median"] / result["variants"][base]["rps_median"]
        cpu = row["cpu_ms_per_request_median"]
        parts = " ".join(f"{k[:6]}={v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if k != "total")
        print(f"{name:14s} {row['rps_median']:7.0f} {ratio:6.2f} {row['latency']['p50_ms']:7.2f} "
              f"{row['latency']['p99_ms']:7.2f} {cpu['total']:10.2f}  {parts}  err={row['errors']}")
    return write_result(args.tag, result)


if __name__ == "__main__":
    sys.exit(main())
